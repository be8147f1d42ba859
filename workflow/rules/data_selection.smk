# data_selection application: rules (being written).
