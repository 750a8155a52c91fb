//! Small dense least squares: Gram-matrix accumulation and multi-output ridge solves by Cholesky.
//!
//! The regressions here have at most a few hundred features and many rows, so accumulating
//! `XᵀX` and `XᵀY` once and solving the normal equations is both the fastest and the simplest
//! exact method; it also lets rows stream in without materialising the design matrix.

/// Running `XᵀX` (upper triangle, row-major `p×p`) and `XᵀY` (`p×k`) over added rows.
#[derive(Debug, Clone)]
pub(crate) struct Gram {
    p: usize,
    k: usize,
    xtx: Vec<f64>,
    xty: Vec<f64>,
    rows: usize,
}

impl Gram {
    pub(crate) fn new(p: usize, k: usize) -> Self {
        Gram {
            p,
            k,
            xtx: vec![0.0; p * p],
            xty: vec![0.0; p * k],
            rows: 0,
        }
    }

    pub(crate) fn rows(&self) -> usize {
        self.rows
    }

    /// Adds one row with features `x` (length `p`) and targets `y` (length `k`).
    pub(crate) fn add(&mut self, x: &[f64], y: &[f64]) {
        debug_assert_eq!(x.len(), self.p);
        debug_assert_eq!(y.len(), self.k);
        let (p, k) = (self.p, self.k);
        for i in 0..p {
            let xi = x[i];
            if xi == 0.0 {
                continue;
            }
            let row = &mut self.xtx[i * p + i..i * p + p];
            for (r, &xj) in row.iter_mut().zip(&x[i..]) {
                *r += xi * xj;
            }
            let out = &mut self.xty[i * k..i * k + k];
            for (o, &yc) in out.iter_mut().zip(y) {
                *o += xi * yc;
            }
        }
        self.rows += 1;
    }

    pub(crate) fn merge(&mut self, other: &Gram) {
        for (a, b) in self.xtx.iter_mut().zip(&other.xtx) {
            *a += b;
        }
        for (a, b) in self.xty.iter_mut().zip(&other.xty) {
            *a += b;
        }
        self.rows += other.rows;
    }

    /// Ridge coefficients (`p×k`, row-major) minimising `‖Y − XB‖² + λ·s·‖B‖²` where `s` is the mean
    /// diagonal of `XᵀX` over the penalised features, so `lambda` does not depend on the data scale.
    /// The last `free` features (e.g. an intercept) are not penalised.
    pub(crate) fn solve(&self, lambda: f64, free: usize) -> Option<Vec<f64>> {
        let (p, k) = (self.p, self.k);
        let penalised = p.saturating_sub(free);
        let mut a = vec![0.0; p * p];
        for i in 0..p {
            for j in i..p {
                a[i * p + j] = self.xtx[i * p + j];
                a[j * p + i] = self.xtx[i * p + j];
            }
        }
        let mean_diag = if penalised > 0 {
            (0..penalised).map(|i| a[i * p + i]).sum::<f64>() / penalised as f64
        } else {
            0.0
        };
        let max_diag = (0..p).map(|i| a[i * p + i]).fold(0.0_f64, f64::max);
        let jitter = 1e-10 * max_diag.max(1e-300);
        for i in 0..p {
            a[i * p + i] += jitter
                + if i < penalised {
                    lambda * mean_diag
                } else {
                    0.0
                };
        }
        cholesky_solve(&mut a, &self.xty, p, k)
    }
}

/// Solves `A·X = B` for symmetric positive definite `A` (`p×p`, overwritten) and `B` (`p×k`).
fn cholesky_solve(a: &mut [f64], b: &[f64], p: usize, k: usize) -> Option<Vec<f64>> {
    // In-place lower Cholesky factor.
    for j in 0..p {
        let mut d = a[j * p + j];
        for m in 0..j {
            d -= a[j * p + m] * a[j * p + m];
        }
        if d <= 0.0 || !d.is_finite() {
            return None;
        }
        let d = d.sqrt();
        a[j * p + j] = d;
        for i in j + 1..p {
            let mut s = a[i * p + j];
            for m in 0..j {
                s -= a[i * p + m] * a[j * p + m];
            }
            a[i * p + j] = s / d;
        }
    }
    let mut x = b.to_vec();
    for c in 0..k {
        // Forward: L·z = b.
        for i in 0..p {
            let mut s = x[i * k + c];
            for m in 0..i {
                s -= a[i * p + m] * x[m * k + c];
            }
            x[i * k + c] = s / a[i * p + i];
        }
        // Backward: Lᵀ·x = z.
        for i in (0..p).rev() {
            let mut s = x[i * k + c];
            for m in i + 1..p {
                s -= a[m * p + i] * x[m * k + c];
            }
            x[i * k + c] = s / a[i * p + i];
        }
    }
    Some(x)
}

/// `x·B` for one feature row and `p×k` coefficients.
pub(crate) fn predict_row(x: &[f64], coef: &[f64], k: usize) -> Vec<f64> {
    let mut out = vec![0.0; k];
    for (i, &xi) in x.iter().enumerate() {
        if xi == 0.0 {
            continue;
        }
        for (o, &b) in out.iter_mut().zip(&coef[i * k..i * k + k]) {
            *o += xi * b;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fit(rows: &[(&[f64], &[f64])], lambda: f64, free: usize) -> Vec<f64> {
        let p = rows[0].0.len();
        let k = rows[0].1.len();
        let mut g = Gram::new(p, k);
        for (x, y) in rows {
            g.add(x, y);
        }
        g.solve(lambda, free).expect("solvable")
    }

    #[test]
    fn recovers_exact_linear_maps() {
        // (rows, expected coefficients p×k)
        type Rows<'a> = &'a [(&'a [f64], &'a [f64])];
        let cases: &[(Rows, &[f64])] = &[
            // y = 2a + 1 (intercept last)
            (
                &[
                    (&[0.0, 1.0], &[1.0]),
                    (&[1.0, 1.0], &[3.0]),
                    (&[2.0, 1.0], &[5.0]),
                ],
                &[2.0, 1.0],
            ),
            // two outputs: y1 = a - b, y2 = 3b
            (
                &[
                    (&[1.0, 0.0], &[1.0, 0.0]),
                    (&[0.0, 1.0], &[-1.0, 3.0]),
                    (&[1.0, 1.0], &[0.0, 3.0]),
                    (&[2.0, -1.0], &[3.0, -3.0]),
                ],
                &[1.0, 0.0, -1.0, 3.0],
            ),
        ];
        for (rows, expect) in cases {
            let got = fit(rows, 0.0, 1);
            for (g, e) in got.iter().zip(expect.iter()) {
                assert!((g - e).abs() < 1e-6, "got {got:?}, expected {expect:?}");
            }
        }
    }

    #[test]
    fn ridge_shrinks_towards_zero_but_not_the_intercept() {
        let rows: &[(&[f64], &[f64])] = &[
            (&[0.0, 1.0], &[11.0]),
            (&[1.0, 1.0], &[13.0]),
            (&[2.0, 1.0], &[15.0]),
        ];
        let loose = fit(rows, 0.0, 1);
        let tight = fit(rows, 100.0, 1);
        assert!(
            tight[0].abs() < loose[0].abs() / 10.0,
            "{tight:?} vs {loose:?}"
        );
        // With the slope shrunk away, the free intercept moves to the mean.
        assert!((tight[1] - 13.0).abs() < 0.5, "{tight:?}");
        let pred = predict_row(&[1.0, 1.0], &loose, 1);
        assert!((pred[0] - 13.0).abs() < 1e-6);
    }

    #[test]
    fn singular_system_without_ridge_still_solves_with_ridge() {
        let rows: &[(&[f64], &[f64])] = &[(&[1.0, 1.0], &[2.0]), (&[2.0, 2.0], &[4.0])];
        let got = fit(rows, 1e-3, 0);
        let pred = predict_row(&[1.0, 1.0], &got, 1);
        assert!((pred[0] - 2.0).abs() < 1e-2, "{got:?}");
    }
}
