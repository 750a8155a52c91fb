//! The population model: a Gaussian mixture (fitted with linfa) over robustly standardised
//! per-minute features of every client, scoring how unlike any normal group a client minute is.
//! It speaks for clients too new to have a baseline of their own, which is how brand-new
//! attacking identities are caught.
//!
//! Fitting uses `linfa-clustering`; scoring is a plain loop over the fitted weights, means and
//! Cholesky factors (no allocation per row), so one minute of 100,000 clients scores in well under
//! a second.

use linfa::traits::Fit;
use linfa::DatasetBase;
use linfa_clustering::GaussianMixtureModel;
use ndarray::Array2;

use super::features::ClientMinute;

/// Number of features the model sees.
pub const DIM: usize = 15;

/// Names of the model features, for reasons.
pub const FEATURE_NAMES: [&str; DIM] = [
    "requests_per_min",
    "burstiness",
    "distinct_paths_per_request",
    "distinct_routes",
    "route_entropy",
    "success_share",
    "status_401_share",
    "status_403_share",
    "status_404_share",
    "server_error_share",
    "post_share",
    "mean_latency_ms",
    "mean_bytes",
    "inter_arrival_cv",
    "identified_by_ip",
];

/// The model features of one row, in the units the model standardises.
///
/// Status and method shares are shrunk towards "successful GET" by two pseudo-requests, so a
/// minute of one or two requests cannot look like a pure error pattern.
pub fn features(row: &ClientMinute) -> [f64; DIM] {
    let st = &row.status;
    let n = f64::from(row.requests) + 2.0;
    let sh = |k: u32| f64::from(k) / n;
    [
        f64::from(row.requests).ln_1p(),
        row.burstiness(),
        row.distinct_paths() as f64 / f64::from(row.requests.max(1)),
        (row.distinct_routes() as f64).ln_1p(),
        row.route_entropy(),
        (f64::from(st.s2xx + st.s3xx) + 2.0) / n,
        sh(st.s401),
        sh(st.s403),
        sh(st.s404),
        sh(st.s5xx),
        sh(row.post),
        row.mean_latency_ms().ln_1p(),
        row.mean_bytes().ln_1p(),
        row.inter_arrival_cv(),
        if row.client.kind == sluice_core::ClientKind::Ip {
            1.0
        } else {
            0.0
        },
    ]
}

/// Back from model units to what an analyst reads.
pub fn display(i: usize, v: f64) -> f64 {
    match i {
        0 | 3 | 11 | 12 => v.exp() - 1.0,
        _ => v,
    }
}

const SCALE_FLOOR: [f64; DIM] = [
    0.2, 0.2, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.5,
];

/// Why a model could not be fitted.
#[derive(Debug, thiserror::Error)]
pub enum PopulationError {
    #[error("population model needs at least {need} rows, got {got}")]
    TooFewRows { need: usize, got: usize },
    #[error("gaussian mixture fit failed: {0}")]
    Fit(String),
}

/// Fitting options.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct PopulationConfig {
    pub components: usize,
    /// Added to covariance diagonals (standardised units).
    pub reg_covariance: f64,
    pub max_iterations: u64,
    pub min_rows: usize,
}

impl Default for PopulationConfig {
    fn default() -> Self {
        PopulationConfig {
            components: 6,
            reg_covariance: 0.2,
            max_iterations: 100,
            min_rows: 100,
        }
    }
}

#[derive(Clone, Debug, serde::Serialize)]
struct Component {
    log_weight: f64,
    mean: [f64; DIM],
    /// Lower Cholesky factor of the covariance, row-major.
    chol: [[f64; DIM]; DIM],
    /// `-0.5 * (DIM ln 2 pi + ln det covariance)`.
    log_norm: f64,
}

/// A fitted population model with its calibration. It serialises to the artefact the model
/// registry exports (standardisation, mixture components with Cholesky factors, calibration).
#[derive(Clone, Debug, serde::Serialize)]
pub struct PopulationModel {
    center: [f64; DIM],
    scale: [f64; DIM],
    components: Vec<Component>,
    /// Median negative log-likelihood of the training rows.
    nll_median: f64,
    /// 99.9th percentile of the training rows' negative log-likelihood.
    nll_q999: f64,
    pub trained_rows: usize,
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

impl PopulationModel {
    /// Fit on raw feature rows (see [`features`]).
    pub fn fit(rows: &[[f64; DIM]], cfg: &PopulationConfig) -> Result<Self, PopulationError> {
        if rows.len() < cfg.min_rows {
            return Err(PopulationError::TooFewRows {
                need: cfg.min_rows,
                got: rows.len(),
            });
        }
        let mut center = [0.0; DIM];
        let mut scale = [1.0; DIM];
        let mut col = Vec::with_capacity(rows.len());
        for j in 0..DIM {
            col.clear();
            col.extend(rows.iter().map(|r| r[j]));
            col.sort_by(f64::total_cmp);
            let med = quantile(&col, 0.5);
            let iqr = quantile(&col, 0.75) - quantile(&col, 0.25);
            let sd = {
                let n = col.len() as f64;
                let mean = col.iter().sum::<f64>() / n;
                (col.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n).sqrt()
            };
            center[j] = med;
            scale[j] = (iqr / 1.349).max(0.5 * sd).max(SCALE_FLOOR[j]);
        }
        let mut model = PopulationModel {
            center,
            scale,
            components: Vec::new(),
            nll_median: 0.0,
            nll_q999: 1.0,
            trained_rows: rows.len(),
        };
        let mut data = Array2::<f64>::zeros((rows.len(), DIM));
        for (i, r) in rows.iter().enumerate() {
            let z = model.standardise(r);
            for j in 0..DIM {
                data[[i, j]] = z[j];
            }
        }
        // about 200 rows per full-covariance component at least, or a small sample overfits
        let k = cfg.components.min(rows.len() / 200).max(1);
        let gmm = GaussianMixtureModel::params(k)
            .reg_covariance(cfg.reg_covariance)
            .max_n_iterations(cfg.max_iterations)
            .tolerance(1e-3)
            .fit(&DatasetBase::from(data))
            .map_err(|e| PopulationError::Fit(e.to_string()))?;
        let weights = gmm.weights();
        let means = gmm.means();
        let covs = gmm.covariances();
        for c in 0..weights.len() {
            let mut cov = [[0.0; DIM]; DIM];
            for (a, row) in cov.iter_mut().enumerate() {
                for (b, v) in row.iter_mut().enumerate() {
                    *v = covs[[c, a, b]];
                }
            }
            let Some(chol) = cholesky(&cov) else {
                continue;
            };
            let log_det: f64 = (0..DIM).map(|i| 2.0 * chol[i][i].ln()).sum();
            let mut mean = [0.0; DIM];
            for (j, m) in mean.iter_mut().enumerate() {
                *m = means[[c, j]];
            }
            model.components.push(Component {
                log_weight: weights[c].max(1e-300).ln(),
                mean,
                chol,
                log_norm: -0.5 * (DIM as f64 * (2.0 * std::f64::consts::PI).ln() + log_det),
            });
        }
        if model.components.is_empty() {
            return Err(PopulationError::Fit("every component was singular".into()));
        }
        let mut nll: Vec<f64> = rows.iter().map(|r| model.nll(r)).collect();
        nll.sort_by(f64::total_cmp);
        model.nll_median = quantile(&nll, 0.5);
        model.nll_q999 = quantile(&nll, 0.999).max(model.nll_median + 1.0);
        Ok(model)
    }

    fn standardise(&self, x: &[f64; DIM]) -> [f64; DIM] {
        let mut z = [0.0; DIM];
        for j in 0..DIM {
            z[j] = ((x[j] - self.center[j]) / self.scale[j]).clamp(-12.0, 12.0);
        }
        z
    }

    /// Negative log-likelihood of a raw feature row.
    #[allow(clippy::needless_range_loop)] // triangular solves read clearer with indices
    pub fn nll(&self, x: &[f64; DIM]) -> f64 {
        let z = self.standardise(x);
        let mut best = f64::NEG_INFINITY;
        let mut terms = [0.0f64; 16];
        let n = self.components.len().min(16);
        for (t, c) in terms.iter_mut().zip(&self.components).take(n) {
            // forward substitution: L y = z - mean
            let mut y = [0.0; DIM];
            let mut quad = 0.0;
            for i in 0..DIM {
                let mut s = z[i] - c.mean[i];
                for k in 0..i {
                    s -= c.chol[i][k] * y[k];
                }
                y[i] = s / c.chol[i][i];
                quad += y[i] * y[i];
            }
            *t = c.log_weight + c.log_norm - 0.5 * quad;
            best = best.max(*t);
        }
        let sum: f64 = terms[..n].iter().map(|t| (t - best).exp()).sum();
        -(best + sum.ln())
    }

    /// Evidence on the detector's common scale: 0 at the training median, 6 at the training
    /// rows' 99.9th percentile, growing linearly beyond.
    pub fn evidence(&self, x: &[f64; DIM]) -> f64 {
        (6.0 * (self.nll(x) - self.nll_median) / (self.nll_q999 - self.nll_median)).max(0.0)
    }

    /// The features that make a row unusual: standardised distance from the nearest component
    /// mean, largest first, as `(feature index, observed, expected)` in display units.
    pub fn explain(&self, x: &[f64; DIM], top: usize) -> Vec<(usize, f64, f64)> {
        let z = self.standardise(x);
        let Some(c) = self.components.iter().min_by(|a, b| {
            let da: f64 = (0..DIM).map(|j| (z[j] - a.mean[j]).powi(2)).sum();
            let db: f64 = (0..DIM).map(|j| (z[j] - b.mean[j]).powi(2)).sum();
            da.total_cmp(&db)
        }) else {
            return Vec::new();
        };
        let mut d: Vec<(usize, f64)> = (0..DIM)
            .map(|j| (j, (z[j] - c.mean[j]).abs() / c.chol[j][j].max(1e-6)))
            .collect();
        d.sort_by(|a, b| b.1.total_cmp(&a.1));
        d.into_iter()
            .take(top)
            .map(|(j, _)| {
                let expected = c.mean[j] * self.scale[j] + self.center[j];
                (j, display(j, x[j]), display(j, expected))
            })
            .collect()
    }
}

#[allow(clippy::needless_range_loop)]
fn cholesky(a: &[[f64; DIM]; DIM]) -> Option<[[f64; DIM]; DIM]> {
    let mut l = [[0.0; DIM]; DIM];
    for i in 0..DIM {
        for j in 0..=i {
            let mut s = a[i][j];
            for k in 0..j {
                s -= l[i][k] * l[j][k];
            }
            if i == j {
                if s <= 0.0 || !s.is_finite() {
                    return None;
                }
                l[i][i] = s.sqrt();
            } else {
                l[i][j] = s / l[j][j];
            }
        }
    }
    Some(l)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outlier_scores_higher_than_inliers() {
        // two normal groups in a couple of dimensions, the rest constant-ish
        let mut rows = Vec::new();
        let mut s = 1u64;
        let mut u = || {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 11) as f64) / ((1u64 << 53) as f64)
        };
        for i in 0..600 {
            let mut r = [0.0; DIM];
            let g = if i % 2 == 0 { 1.5 } else { 3.0 };
            for (j, v) in r.iter_mut().enumerate() {
                *v = if j == 0 { g } else { 0.5 } + 0.2 * (u() - 0.5);
            }
            rows.push(r);
        }
        let m = PopulationModel::fit(&rows, &PopulationConfig::default()).unwrap();
        let inlier = rows[3];
        let mut outlier = rows[3];
        outlier[0] = 6.0;
        outlier[6] = 1.0;
        assert!(m.evidence(&inlier) < 6.0, "{}", m.evidence(&inlier));
        assert!(m.evidence(&outlier) > 20.0, "{}", m.evidence(&outlier));
        let why = m.explain(&outlier, 2);
        assert!(why.iter().any(|(j, _, _)| *j == 0 || *j == 6), "{why:?}");
    }

    #[test]
    fn too_few_rows_is_an_error() {
        let err = PopulationModel::fit(&[[0.0; DIM]; 3], &PopulationConfig::default())
            .unwrap_err()
            .to_string();
        assert_eq!(err, "population model needs at least 100 rows, got 3");
    }
}
