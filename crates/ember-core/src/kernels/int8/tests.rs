//! Tests of the int8 GEMM: packing, each SIMD microkernel against the portable one, and `gemm`
//! with every kernel this CPU runs against a float64 reference of the dequantized product.

use super::*;
use crate::kernels::test_data;

const ISAS: [Isa; 4] = [Isa::Portable, Isa::Avx2, Isa::Avx512Vnni, Isa::NeonDot];

/// Symmetric int8 weights `[n, k]` in groups of `g`, as `models::quant` makes them.
fn quant_w(w: &[f32], g: usize) -> (Vec<i8>, Vec<f32>) {
    let mut q = vec![0i8; w.len()];
    let s = w
        .chunks(g)
        .zip(q.chunks_mut(g))
        .map(|(c, qc)| quantize_group(c, qc))
        .collect();
    (q, s)
}

/// Float64 `dequant(x) · dequant(w)^T + bias` from the unpadded codes.
fn reference(xq: &QuantizedRows, wq: &[i8], ws: &[f32], bias: &[f32], n: usize) -> Vec<f64> {
    let (m, k, g) = (xq.rows, xq.cols, xq.group);
    let (groups, gp) = (k / g, g.next_multiple_of(4));
    let mut out = vec![0f64; m * n];
    for i in 0..m {
        for j in 0..n {
            let mut s = bias.get(j).map_or(0.0, |&b| b as f64);
            for p in 0..k {
                let (gi, pi) = (p / g, p % g);
                let x =
                    xq.q[i * groups * gp + gi * gp + pi] as f64 * xq.scales[i * groups + gi] as f64;
                s += x * wq[j * k + p] as f64 * ws[j * groups + gi] as f64;
            }
            out[i * n + j] = s;
        }
    }
    out
}

#[test]
fn pack_round_trips() {
    for &(n, k, g) in &[(37, 30, 10), (16, 128, 128), (3, 7, 7), (40, 256, 128)] {
        let (q, s) = quant_w(&test_data(n * k, 3, 1.0), g);
        for isa in ISAS {
            let p = PackedInt8::pack_for(isa, &q, &s, n, k, g);
            assert_eq!(
                p.unpack(),
                (q.clone(), s.clone()),
                "{isa:?} {n}x{k} in groups of {g}"
            );
            let (groups, gp) = (k / g, g.next_multiple_of(4));
            assert_eq!(p.bytes(), n.div_ceil(NR) * NR * groups * (gp + 4));
        }
    }
}

#[test]
fn quantize_rows_pads_groups_and_keeps_codes_in_range() {
    let (cols, g) = (30, 10);
    let mut x = test_data(3 * cols, 9, 2.0);
    x[31] = 50.0; // an outlier in row 1, group 0: the other groups keep their precision
    let mut xq = QuantizedRows::default();
    quantize_rows(&x, cols, g, &mut xq);
    assert_eq!((xq.rows, xq.cols, xq.group), (3, cols, g));
    assert_eq!((xq.q.len(), xq.scales.len()), (3 * 3 * 12, 9));
    for (gi, (codes, &s)) in xq.q.chunks(12).zip(&xq.scales).enumerate() {
        assert_eq!(&codes[10..], &[0, 0], "padding of group {gi}");
        assert_eq!(xq.sums[gi], codes.iter().map(|&c| c as i32).sum::<i32>());
        assert!(codes.iter().all(|&c| c >= -127));
        let src = &x[gi * g..(gi + 1) * g];
        for (&c, &v) in codes.iter().zip(src) {
            assert!(
                (c as f32 * s - v).abs() <= s * 0.5 + 1e-6,
                "group {gi}: {c} * {s} vs {v}"
            );
        }
    }
    assert!((xq.scales[3] - 50.0 / 127.0).abs() < 1e-6);
    assert!(xq.scales[4] < 2.0 / 127.0 + 1e-6);
}

/// Odd shapes (partial panels, odd panel counts, partial and uneven row tiles, groups not a
/// multiple of 4 or 32, one group per row, blocks and panel pairs split across threads) and the
/// model's shapes, with and without bias.
#[test]
fn gemm_matches_the_reference() {
    for &(m, k, n, g) in &[
        (1, 4, 1, 4),
        (5, 30, 37, 10),
        (3, 37, 17, 37),
        (13, 256, 70, 128),
        (15, 384, 1152, 128),
        (49, 64, 100, 64),
        (100, 129, 48, 129),
        (200, 384, 384, 128),
        (27, 130, 69, 130),
        (25, 260, 16 * 7, 130),
    ] {
        let mut x = test_data(m * k, 1, 1.0);
        x[k / 2] = 8.0; // an outlier channel
        let w = test_data(n * k, 2, 0.5);
        let b = test_data(n, 4, 0.5);
        let (wq, ws) = quant_w(&w, g);
        let mut xq = QuantizedRows::default();
        quantize_rows(&x, k, g, &mut xq);
        for isa in ISAS.into_iter().filter(|i| i.available()) {
            let packed = PackedInt8::pack_for(isa, &wq, &ws, n, k, g);
            for bias in [&b[..], &[]] {
                let want = reference(&xq, &wq, &ws, bias, n);
                let mut got = vec![f32::NAN; m * n];
                gemm(&xq, &packed, bias, &mut got);
                for (idx, (&g, &w)) in got.iter().zip(&want).enumerate() {
                    assert!(
                        (g as f64 - w).abs() <= 1e-5 * (1.0 + w.abs()),
                        "{isa:?} {m}x{k}x{n} [{idx}]: {g} vs {w}"
                    );
                }
            }
        }
    }
}

/// The quantized product stays close to the float one: two 8-bit roundings per product.
#[test]
fn gemm_is_close_to_the_f32_product() {
    let (m, k, n, g) = (37, 256, 70, 128);
    let x = test_data(m * k, 1, 1.0);
    let w = test_data(n * k, 2, 1.0);
    let (wq, ws) = quant_w(&w, g);
    let packed = PackedInt8::pack(&wq, &ws, n, k, g);
    let mut xq = QuantizedRows::default();
    quantize_rows(&x, k, g, &mut xq);
    let mut out = vec![0f32; m * n];
    gemm(&xq, &packed, &[], &mut out);
    let (mut worst, mut scale) = (0f64, 0f64);
    for i in 0..m {
        for j in 0..n {
            let exact: f64 = (0..k)
                .map(|p| x[i * k + p] as f64 * w[j * k + p] as f64)
                .sum();
            worst = worst.max((out[i * n + j] as f64 - exact).abs());
            scale = scale.max(exact.abs());
        }
    }
    assert!(worst < 0.01 * scale, "worst {worst} of {scale}");
}

#[cfg(target_arch = "x86_64")]
#[test]
fn avx2_quantizer_matches_the_portable_one() {
    if !has_avx2() {
        return;
    }
    // Identical scales, codes equal up to a rounding tie.
    let g = 128;
    let mut x = test_data(3 * g, 5, 1.0);
    x[3] = 9.0;
    for c in x.chunks(g) {
        let (mut qa, mut qb) = (vec![0i8; g], vec![0i8; g]);
        let sa = quantize_group(c, &mut qa);
        // SAFETY: AVX2 and FMA detected above; both slices hold `g` values.
        let (sb, sum) = unsafe { x86::quantize_group(c, &mut qb) };
        assert!((sa - sb).abs() <= 1e-7 * sa);
        assert!(qa
            .iter()
            .zip(&qb)
            .all(|(a, b)| (*a as i32 - *b as i32).abs() <= 1));
        // The sum the AVX2 quantizer returns is its own codes' sum.
        assert_eq!(sum, qb.iter().map(|&v| v as i32).sum::<i32>());
    }
}

/// Every SIMD microkernel against the portable one on the same tiles, for every row count and
/// panel count (the portable tile run panel by panel): random codes, then the extremes where
/// `vpmaddubsw` would saturate without the sign trick (every pair sum at +-2 * 127 * 127) and
/// where offset weights reach 0 and 254; groups of whole steps, of one step, and padded ones.
#[test]
fn simd_tiles_match_the_portable_one() {
    for &(groups, group) in &[(3usize, 132usize), (2, 4), (2, 130), (1, 37)] {
        let gp = group.next_multiple_of(4);
        let row = groups * gp;
        let plen = row * NR;
        let codes = |n: usize, seed: u32| -> Vec<i8> {
            test_data(n, seed, 127.5)
                .iter()
                .map(|v| v.round().clamp(-127.0, 127.0) as i8)
                .collect()
        };
        // Zero padding as `quantize_rows` and `pack_for` leave it: a row's codes past `group` in
        // each group, and a panel's steps' values past `group` (byte `64 s + 4 c + t` is input
        // `4 s + t` of its group).
        let pad_x = |mut v: Vec<i8>| {
            v.iter_mut()
                .enumerate()
                .filter(|(i, _)| i % gp >= group)
                .for_each(|(_, c)| *c = 0);
            v
        };
        let pad_w = |mut v: Vec<i8>| {
            v.iter_mut()
                .enumerate()
                .filter(|(i, _)| (i % (gp * NR)) / (4 * NR) * 4 + i % 4 >= group)
                .for_each(|(_, c)| *c = 0);
            v
        };
        let xs = test_data(MR * groups, 7, 1.0);
        let ps = test_data(PANELS * groups * NR, 8, 1.0);
        let bias = test_data(PANELS * NR, 9, 1.0);
        let n = PANELS * plen;
        let cases = [
            (codes(MR * row, 1), codes(n, 2)),
            (vec![127; MR * row], vec![-127; n]),
            (vec![-127; MR * row], vec![-127; n]),
            (vec![127; MR * row], vec![127; n]),
        ]
        .map(|(x, w)| (pad_x(x), pad_w(w)));
        for isa in [Isa::Avx2, Isa::Avx512Vnni, Isa::NeonDot] {
            if !isa.available() {
                eprintln!("note: {isa:?} not on this CPU; its kernel is untested here");
                continue;
            }
            for (xq, w) in &cases {
                let xsum: Vec<i32> = xq
                    .chunks(gp)
                    .map(|c| c.iter().map(|&v| v as i32).sum())
                    .collect();
                let flip = if isa.offset() { i8::MIN } else { 0 };
                let panel: Vec<i8> = w.iter().map(|&v| v ^ flip).collect();
                for (rows, panels) in
                    (1..=isa.rows()).flat_map(|r| (1..=isa.panels()).map(move |p| (r, p)))
                {
                    let t = Tile {
                        xq,
                        xs: &xs,
                        xsum: &xsum,
                        rows,
                        panels,
                        panel: &panel,
                        ps: &ps,
                        bias: &bias,
                        groups,
                        gp,
                        offset: isa.offset(),
                        // Hints at the panel itself: results must not depend on them.
                        pf: Prefetch::share(&panel, 0, 1),
                    };
                    let mut got = [[f32::NAN; PANELS * NR]; MR];
                    // SAFETY: the CPU runs `isa` (checked above).
                    unsafe {
                        match isa {
                            #[cfg(target_arch = "x86_64")]
                            Isa::Avx2 => x86::tile_avx2(t, Dst::acc(&mut got)),
                            #[cfg(all(target_arch = "x86_64", ember_avx512))]
                            Isa::Avx512Vnni => vnni::tile(t, Dst::acc(&mut got)),
                            #[cfg(target_arch = "aarch64")]
                            Isa::NeonDot => neon::tile(t, Dst::acc(&mut got)),
                            _ => unreachable!("{isa:?} is not available"),
                        }
                    }
                    // The portable tile over all panels at once, then panel by panel.
                    let mut whole = [[f32::NAN; PANELS * NR]; MR];
                    tile(t, &mut whole);
                    for p in 0..panels {
                        let mut want = [[f32::NAN; PANELS * NR]; MR];
                        let one = Tile {
                            panels: 1,
                            panel: &panel[p * plen..(p + 1) * plen],
                            ps: &ps[p * groups * NR..(p + 1) * groups * NR],
                            bias: &bias[p * NR..(p + 1) * NR],
                            ..t
                        };
                        tile(one, &mut want);
                        for r in 0..rows {
                            for c in 0..NR {
                                let (u, v, h) =
                                    (want[r][c], got[r][p * NR + c], whole[r][p * NR + c]);
                                assert!(
                                    (u - v).abs() <= 1e-6 * (1.0 + u.abs())
                                        && (u - h).abs() <= 1e-6 * (1.0 + u.abs()),
                                    "{isa:?} groups {groups}x{group} rows {rows} panels {panels} \
                                     [{r}, {p}:{c}]: portable {u} (both panels {h}) vs {v}"
                                );
                            }
                        }
                    }
                    // The extremes: each output is the exact sum of `group` products of
                    // +-127 * 127 per group.
                    if xq[0] == xq[1] && w[0] == w[1] {
                        let per = (xq[0] as f32) * (w[0] as f32) * group as f32;
                        let want: f32 = bias[0]
                            + (0..groups)
                                .map(|gi| per * xs[gi] * ps[gi * NR])
                                .sum::<f32>();
                        assert!(
                            (got[0][0] - want).abs() <= 1e-5 * want.abs(),
                            "{} vs {want}",
                            got[0][0]
                        );
                    }
                }
            }
        }
    }
}
