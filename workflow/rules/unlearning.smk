# unlearning application: rules (being written).
