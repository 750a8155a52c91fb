//! Forecasting of request-rate series with prediction intervals.
