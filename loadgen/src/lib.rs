//! strata-loadgen: the verifying load generator (not built yet; see issue 5).
