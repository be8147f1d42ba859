# backdoor application: rules (being written).
