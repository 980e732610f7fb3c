//! Word lists the generator draws from: realistic-looking values, including the unicode,
//! emoji and odd-but-legal shapes (a one-day TimeSpan, a window past midnight) that a
//! mirror meets on the live API.

pub(crate) const NAME_PREFIXES: &[&str] = &[
    "Acme",
    "Summit",
    "Blue Ridge",
    "Lakeside",
    "Pinnacle",
    "Evergreen",
    "Northstar",
    "Harbor",
    "Redwood",
    "Silver Oak",
    "Metro",
    "Prime",
];

pub(crate) const NAME_TRADES: &[&str] = &[
    "Dental",
    "Roofing",
    "Realty",
    "Auto Sales",
    "Med Spa",
    "Law Group",
    "Fitness",
    "Solar",
    "HVAC",
    "Insurance",
    "Chiropractic",
    "Plumbing",
];

pub(crate) const NAME_SUFFIXES: &[&str] = &["", "", "", " - Downtown", " (Main)", " LLC", " #2"];

pub(crate) const UNICODE_NAMES: &[&str] = &[
    "Café Olé Bistro",
    "Zürich Zahnarztpraxis",
    "São Paulo Imóveis",
    "東京デンタルクリニック",
    "北京房产中介",
    "서울 피부과",
    "Ünal Oto Galeri",
    "Crème de la Crème Spa",
    "🚀 Rocket Roofing",
    "Pizzería Niño ☀️",
    "Ålesund Tannlege",
    "Łódź Nieruchomości",
    "Mañana Marketing 🌮",
    "Ελληνική Οδοντιατρική",
];

pub(crate) const BOT_NAMES: &[&str] = &[
    "Appointment Setter",
    "Reactivation Bot",
    "FAQ Assistant",
    "Lead Qualifier",
    "Review Collector",
    "After-hours Receptionist",
    "Spanish Closer 🇪🇸",
    "Database Reactivation",
    "Quote Builder",
    "Missed Call Text Back",
    "Webinar Follow-up",
    "Über Support",
];

pub(crate) const TAG_NAMES: &[&str] = &[
    "hot lead",
    "cold lead",
    "appointment booked",
    "no show",
    "do not contact",
    "customer",
    "vip",
    "facebook lead",
    "google ads",
    "reactivation",
    "réservé",
    "紧急",
    "needs follow-up",
    "spanish",
    "warm lead",
    "referral",
    "webinar",
    "won",
    "lost",
    "🔥 priority",
    "bot off",
    "human takeover",
    "quote sent",
    "Hot Lead",
];

pub(crate) const CHANNELS: &[&str] = &["SMS", "Email", "FB", "IG", "GMB", "Live_Chat", "WhatsApp"];

pub(crate) const PERSONAS: &[&str] = &["Sarah", "Miguel", "Ava 🌸", "Jürgen", "Priya", "Sam"];

pub(crate) const DAYS: &[&str] = &[
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
];

pub(crate) const START_TIMES: &[&str] =
    &["08:00:00", "09:00:00", "13:30:00", "14:00:00", "22:00:00"];

pub(crate) const DURATIONS: &[&str] =
    &["08:00:00", "09:30:00", "04:00:00", "00:45:00", "1.00:00:00"];

pub(crate) const DOMAINS: &[&str] = &[
    "acme-dental.com",
    "summitroofing.io",
    "lakeside-realty.net",
    "example.org",
    "bücher.example",
    "med-spa.co",
];

pub(crate) const COST_OVERRIDES: &[&str] = &["0.0125", "0.02", "0.015", "0.0075", "0.10", "1"];
