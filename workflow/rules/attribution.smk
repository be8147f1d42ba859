# attribution application: rules (being written).
