//! Univariate streaming anomaly scoring (causal: the score at t uses only data up to t).
