# modeldiff application: rules (being written).
