//! The tiled kernel against the textbook formula (one full score row per query) and every SIMD
//! path against the portable one, on the same inputs: grouped-query heads, causal and sliding
//! spans, scales, sequences padded on either side or packed back to back.

use super::*;
use crate::kernels::test_data;

/// Reference: every score of a query, masked outside its span, one softmax, then the context.
fn naive(qkv: &[f32], seqs: &[Rows], spec: &Spec, rows: usize) -> Vec<f32> {
    let Heads {
        heads,
        kv_heads,
        head_dim: d,
    } = spec.heads;
    let (ld, cw) = (spec.heads.row(), spec.heads.ctx_row());
    let mut out = vec![f32::NAN; rows * cw];
    for s in seqs {
        for h in 0..heads {
            let g = h / (heads / kv_heads);
            for i in 0..s.len {
                let q = &qkv[(s.start + i) * ld + h * d..][..d];
                let scores: Vec<f64> = (0..s.len)
                    .map(|j| {
                        let k = &qkv[(s.start + j) * ld + (heads + g) * d..][..d];
                        let inside = j.saturating_add(spec.span.before) >= i
                            && j <= i.saturating_add(spec.span.after);
                        if inside {
                            q.iter().zip(k).map(|(a, b)| (a * b) as f64).sum::<f64>()
                                * spec.scale as f64
                        } else {
                            f64::NEG_INFINITY
                        }
                    })
                    .collect();
                let mx = scores.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(v));
                let p: Vec<f64> = scores.iter().map(|&v| (v - mx).exp()).collect();
                let sum: f64 = p.iter().sum();
                for c in 0..d {
                    out[(s.start + i) * cw + h * d + c] = (0..s.len)
                        .map(|j| {
                            p[j] / sum
                                * qkv[(s.start + j) * ld + (heads + kv_heads + g) * d + c] as f64
                        })
                        .sum::<f64>()
                        as f32;
                }
            }
        }
    }
    out
}

/// A call's inputs: `rows` rows of projections and the sequences in them.
struct Case {
    spec: Spec,
    rows: usize,
    seqs: Vec<Rows>,
}

impl Case {
    fn qkv(&self, seed: u32) -> Vec<f32> {
        test_data(self.rows * self.spec.heads.row(), seed, 1.5)
    }

    /// The kernel on `path`, with rows outside every sequence pre-set to a sentinel.
    fn run(&self, path: Simd, qkv: &[f32]) -> Vec<f32> {
        let mut ctx = vec![7.0f32; self.rows * self.spec.heads.ctx_row()];
        attention_on(path, qkv, &self.seqs, &self.spec, &mut ctx);
        ctx
    }
}

fn cases() -> Vec<Case> {
    let mut all = Vec::new();
    let spans = [
        Span::FULL,
        Span::CAUSAL,
        Span::window(5, 5),
        Span::window(70, 70),
        Span::window(9, 0),
        Span::window(0, 3),
    ];
    // (heads, kv_heads, d): multi-head and grouped-query, head widths of the portable fallback
    // (12) and of one, two and four SIMD panels.
    let shapes = [(2, 2, 16), (4, 2, 32), (4, 1, 12), (2, 1, 64)];
    for (si, span) in spans.into_iter().enumerate() {
        for (hi, &(heads, kv_heads, head_dim)) in shapes.iter().enumerate() {
            let spec = Spec {
                heads: Heads {
                    heads,
                    kv_heads,
                    head_dim,
                },
                span,
                scale: 0.3 + 0.1 * ((si + hi) % 4) as f32,
            };
            // Right padding (a batch of 3 sequences padded to 150 rows), left padding (the same
            // lengths ending at each block's end), and sequences packed back to back.
            let lens = [150, 65, 1];
            let right = lens
                .iter()
                .enumerate()
                .map(|(b, &len)| Rows {
                    start: b * 150,
                    len,
                })
                .collect();
            let left = lens
                .iter()
                .enumerate()
                .map(|(b, &len)| Rows {
                    start: b * 150 + 150 - len,
                    len,
                })
                .collect();
            all.push(Case {
                spec,
                rows: 450,
                seqs: right,
            });
            all.push(Case {
                spec,
                rows: 450,
                seqs: left,
            });
            let packed = [63, 64, 7, 129];
            let mut start = 0;
            let seqs = packed
                .iter()
                .map(|&len| {
                    let r = Rows { start, len };
                    start += len;
                    r
                })
                .collect();
            all.push(Case {
                spec,
                rows: start,
                seqs,
            });
        }
    }
    all
}

fn assert_close(got: &[f32], want: &[f32], tol: f32, what: &str) {
    for (i, (a, b)) in got.iter().zip(want).enumerate() {
        assert!(
            (a - b).abs() <= tol * (1.0 + b.abs()),
            "{what}: value {i}: {a} vs {b}"
        );
    }
}

#[test]
fn every_path_matches_the_naive_formula() {
    for path in Simd::available() {
        for (n, case) in cases().iter().enumerate() {
            let qkv = case.qkv(n as u32 + 1);
            let got = case.run(path, &qkv);
            let want = naive(&qkv, &case.seqs, &case.spec, case.rows);
            let cw = case.spec.heads.ctx_row();
            for (r, (g, w)) in got.chunks(cw).zip(want.chunks(cw)).enumerate() {
                if w[0].is_nan() {
                    // Rows of no sequence are never written.
                    assert!(
                        g.iter().all(|&x| x == 7.0),
                        "{path:?} case {n}: row {r} written"
                    );
                } else {
                    assert_close(g, w, 2e-5, &format!("{path:?} case {n} row {r}"));
                }
            }
        }
    }
}

#[test]
fn simd_paths_match_portable() {
    for path in Simd::available() {
        for (n, case) in cases().iter().enumerate() {
            let qkv = case.qkv(100 + n as u32);
            let a = case.run(Simd::Portable, &qkv);
            let b = case.run(path, &qkv);
            assert_close(&b, &a, 1e-5, &format!("{path:?} case {n}"));
        }
    }
}

/// Plain bidirectional attention over right-padded rows gives what the encoders' kernel gives
/// (the real tokens' rows).
#[test]
fn full_span_matches_the_encoders_kernel() {
    use crate::kernels::attention::{attention as dense, AttnShape};
    let (batch, seq, heads, d) = (3, 90, 4, 32);
    let h = heads * d;
    let qkv = test_data(batch * seq * 3 * h, 9, 1.0);
    let lens = [90, 40, 3];
    let mut mask = vec![0u32; batch * seq];
    for (b, &len) in lens.iter().enumerate() {
        mask[b * seq..b * seq + len].fill(1);
    }
    let mut want = vec![0f32; batch * seq * h];
    let shape = AttnShape {
        batch,
        seq,
        heads,
        head_dim: d,
        scale: AttnShape::scale_for(d),
    };
    dense(&qkv, &mask, &[], shape, &mut want);
    let seqs: Vec<Rows> = lens
        .iter()
        .enumerate()
        .map(|(b, &len)| Rows {
            start: b * seq,
            len,
        })
        .collect();
    let spec = Spec {
        heads: Heads {
            heads,
            kv_heads: heads,
            head_dim: d,
        },
        span: Span::FULL,
        scale: 1.0 / (d as f32).sqrt(),
    };
    let mut got = vec![0f32; want.len()];
    attention(&qkv, &seqs, &spec, &mut got);
    assert_close(&got, &want, 1e-5, "flash vs dense");
}

/// Long enough to run on the pool, with a window: the tasks' results do not depend on which
/// thread runs them (the same as the serial portable run).
#[test]
fn pool_run_matches_serial_portable() {
    let spec = Spec {
        heads: Heads {
            heads: 4,
            kv_heads: 2,
            head_dim: 32,
        },
        span: Span::window(100, 100),
        scale: 0.2,
    };
    let case = Case {
        spec,
        rows: 700,
        seqs: vec![Rows { start: 0, len: 700 }],
    };
    let qkv = case.qkv(5);
    let a = case.run(Simd::Portable, &qkv);
    let b = case.run(Simd::detect(), &qkv);
    assert_close(&b, &a, 1e-5, "pool");
}

#[test]
#[should_panic(expected = "overlap")]
fn overlapping_sequences_are_refused() {
    let spec = Spec {
        heads: Heads {
            heads: 1,
            kv_heads: 1,
            head_dim: 16,
        },
        span: Span::FULL,
        scale: 1.0,
    };
    let qkv = vec![0f32; 10 * spec.heads.row()];
    let mut ctx = vec![0f32; 10 * 16];
    let seqs = [Rows { start: 0, len: 6 }, Rows { start: 5, len: 2 }];
    attention(&qkv, &seqs, &spec, &mut ctx);
}
