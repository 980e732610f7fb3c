//! Contract tests for the bundled CloseBot simulator: it must behave as the CloseBot API
//! does, and serve records the vendor's OpenAPI schema
//! (tests/fixtures/closebot-openapi-sources.json) accepts.

mod faults;
mod http;
mod mutations;
mod openapi;
mod records;

use closebot_sim::{SchemaVersion, SimOptions, SimServer, Simulator};
use serde_json::Value;

pub const KEY: &str = "sim-key";

pub fn options(sources: usize, schema: Option<SchemaVersion>) -> SimOptions {
    SimOptions {
        seed: 7,
        sources,
        api_key: KEY.into(),
        schema,
    }
}

pub async fn start(sources: usize) -> (Simulator, SimServer) {
    let sim = Simulator::new(options(sources, None));
    let server = sim
        .serve("127.0.0.1:0".parse().unwrap())
        .await
        .expect("bind the simulator");
    (sim, server)
}

/// One raw exchange: status, headers and body text.
pub struct Reply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: String,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", self.body))
    }

    pub fn content_type(&self) -> &str {
        self.headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    /// The sourceIds of a page, in the order served.
    pub fn ids(&self) -> Vec<String> {
        self.json()["results"]
            .as_array()
            .expect("results is an array")
            .iter()
            .map(|s| {
                s["sourceId"]
                    .as_str()
                    .expect("sourceId is a string")
                    .to_owned()
            })
            .collect()
    }
}

pub async fn send(req: reqwest::RequestBuilder) -> Reply {
    let resp = req.send().await.expect("the simulator answers");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.text().await.expect("a complete body");
    Reply {
        status,
        headers,
        body,
    }
}

/// GET /agency/source?{query} with the right key in X-CB-KEY.
pub async fn get(server: &SimServer, query: &str) -> Reply {
    let url = format!("{}/agency/source?{query}", server.base_url());
    send(reqwest::Client::new().get(url).header("X-CB-KEY", KEY)).await
}

pub fn ids_of(records: &[Value]) -> Vec<String> {
    records
        .iter()
        .map(|r| r["sourceId"].as_str().unwrap().to_owned())
        .collect()
}
