mod simulator_contract;
