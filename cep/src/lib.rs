//! strata-cep: the pattern language and NFA matcher (not built yet).
