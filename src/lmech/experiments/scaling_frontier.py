r"""Law: the compute-optimal frontier of one-pass SGD on power-law random features, L*(C) ∝ C^−x at compute
C = N·t·B, has the exponent x of Paquette et al.'s phase of (a, b), known before training.

Theory (:mod:`lmech.theory.scaling`, whose docstring states the conventions, the dictionary to Paquette,
Paquette, Xiao & Pennington 2024, arXiv 2405.15074, and the derivation of the phases from their loss
decomposition :math:`L \asymp F_{pp}(t) + F_{ac}(N, t) + F_0(N) + K_{pp}(t)`):

==========  ================  ==================  ==================  ====================
phase       condition         L* ∝ C^−x           N* ∝ C^y            t*/N* ∝ C^(1 − 2y)
==========  ================  ==================  ==================  ====================
Ia          a − 1 < b         (a − 1)/(1 + b)     1/(1 + b)           (b − 1)/(b + 1)
II          b < a − 1, a < 2b (a − 1)/a           (a − b)/a           (2b − a)/a
III         a > 2b            1 − 1/(2b)          1/2                 0
==========  ================  ==================  ==================  ====================

In phase Ia the frontier balances the time term :math:`F_{pp} \propto t^{-(a-1)/b}` against the capacity term
:math:`F_0 \propto N^{-(a-1)}`: the loss is :math:`A/N^\alpha + B/t^\beta` with α = a − 1 and β = (a − 1)/b,
the Chinchilla form (Hoffmann et al. 2022, arXiv 2203.15556, eq. 2, with E = 0 for a noise-free target),
whose compute-optimal allocation N* ∝ C^{β/(α+β)} = C^{1/(1+b)} is the table's. The tokens per parameter
grow as C^{(b−1)/(b+1)}, a ratio set by the spectrum alone. In phases II and III the frontier is set by
:math:`F_{ac} \propto N^{-1}t^{-(1-1/b)}`, a product of N and t outside the Chinchilla form.

Measurement: real one-pass SGD, never the theory's equations. ``replicates`` projections A (N_max × M,
the model of size N uses its first N rows); for each N the student's features are drawn directly as
Gaussian vectors of covariance K = AΛAᵀ/N in K's eigenbasis (u_i ~ N(0, μ_i), y = θ·u + ε, as
:func:`lmech.data.power_law.regression_samples`), ``chains`` independent runs per projection, batch B, step
γ = ``sgd_lr``/tr K of the draw, from w = 0; every run of one model size advances together
(:func:`lmech.experiments.scaling_exponents.sgd_losses`: float32 draws from one generator per model size, a
float32 iterate updated in place; on the same draws a float64 iterate gives the same loss curves to 1e-4,
tests, measured 5·10⁻⁷, and to 2·10⁻⁵ at the phase-II entry's horizons, 6·10⁴ steps at N = 23 and 64). The population loss ½Σμ_i(w_i − θ_i)² + L_N, read out in float64, is recorded at log-spaced steps up
to t_max(N) = min(``max_steps``, C_hi/(N·B)) and averaged over runs and projections: the grid L(N, t).

Horizons (``stop_after``, the phase-II entry; off in the quick book, whose Chinchilla fit uses the whole grid):
a model size only matters at the C where it can be the optimum or the parabola's neighbour of it. Size N_k
stops at ``stop_after`` (≥ 2) times the first C at which each of the next two larger sizes is 2% better on
the exact (Volterra) mean curves of the same draws (:func:`stop_steps`): the iso-compute minimum then sits at
N_{k+2} or beyond, and N* only grows with C. Its curve is then a prefix of the full one (same draws). On the
former phase-II grid (N = 16-512, 256 projections, seed 0) the frontier read with and without it is the same
row for row, measured and exact (x = 0.8695 and 0.8599 either way, 13 bracketed optima; the SGD noise of a
first revision of the kernel), for 16% less SGD;
the closed-form test checks the same on N^-1.5 + t^-0.5.

Reading the frontier (:func:`read_frontier`): for each C of a log grid, L(N, C/(NB)) on every N whose curve
reaches that t (log-linear interpolation between recorded steps); the minimum over N by a parabola in log N
through the smallest value and its two neighbours (a C whose minimum sits at an end of the available N is
left out: its optimum is not bracketed). Fits (:func:`lmech.laws.power_law.log_log_fit`, 95% intervals) of
log L*, log N* and log(t*/N*) against log C over ``compute_window``.

Preconditions (else inconclusive, never judged): the task at least 0.1 from a phase boundary (logarithmic
corrections there); at least 6 bracketed optima over a decade of C; the cut-off M must not bind (issue 15's
"checked"): the exact frontier of the same draws is read again with the modes M < k ≤ 16M added as their mean
over the projection (K + σ_N I and the unlearnable target power Σ_{M<k≤16M} k^{-a},
:func:`lmech.theory.scaling.with_cutoff_tail`), and its slope must stay within 2% of x of the slope at M
(scaling-exponents' share for the same check; the draws are common to both, so the difference is the
cut-off's alone); and the window must be asymptotic *by the theory's own account*: the frontier of the
deterministic equivalent of the expected risk (:func:`expected_frontier_fit`,
:func:`lmech.theory.scaling.expected_frontier`: Silverstein's equation for K's spectrum, Paquette et al.'s
Volterra equation on its quadrature, no projection drawn), read on the config's sizes and budgets as the
measurement is, within 4% (0.8 of the tolerance) of the asymptotic x. It is computed in :meth:`predict`, before
training, and is the same at every seed. Until this revision the check read the exact frontier of the *drawn*
projections instead; that made the verdict depend on the draws twice (a set of atypical projections made the run
inconclusive, where it is measurement noise that x_se reports), and could not tell a wrong phase formula from a
pre-asymptotic window. The drawn projections' exact frontier stays in the verdict's details (``volterra``),
beside the jackknife standard error ``x_se`` of the measured x over the groups of projections and the DE's
slope (``deterministic_equivalent``).

Verdict ``frontier_exponent``: |x_measured/x_predicted − 1| ≤ 0.05 (the issue's number).

Verdicts ``chinchilla_alpha`` and ``chinchilla_beta`` (phase Ia only; elsewhere inconclusive: F_ac couples N
and t and the loss has no Chinchilla form): the Chinchilla Approach-3 fitter (:func:`lmech.laws.scaling.fit_scaling`:
Huber on log-losses, L-BFGS from every 10th of the 4,500 starts of Hoffmann et al. App. D.2) on the grid's
points N ≥ ``fit_from_size``, t ≥ ``fit_from_step`` (every 3rd recorded step), the curves averaged within
``groups`` sets of projections and the bootstrap resampling whole sets (the projections are the independent
units), recovers the predicted α = a − 1 and β = (a − 1)/b within its 95% bootstrap intervals: the judged
value is the prediction's position in the interval (:func:`interval_position`, ≤ 1 inside). E is held at the
theory's floor, 0 (a noise-free target, and the loss vanishes as N → M, t → ∞), not fitted: fitted, E absorbs
the non-additive crossover of the two terms (at a given N the loss approaches F_0(N) through K's bulk, far more
slowly than the sum F_pp + F_0 assumes) and drags β. Measured on the exact expected loss of the same draws (the
Volterra grid, one group, E free vs held): seed 0 β 0.540 vs 0.519, α 1.48 vs 1.44; seed 1 0.502 vs 0.494,
1.59 vs 1.54; seed 2 0.533 either way (E fitted ≈ 0), α 1.37. With E free on the 8 group curves the bootstrap
replicates wander to E > 0 and shift β up: 0.533 [0.473, 0.606], 0.521 [0.471, 0.572], 0.535 [0.508, 0.593]
(seed 2 outside). The pre-asymptotic β is *not* the discreteness of the time sum: Σ_k k^{-a}e^{-2γk^{-b}t} (2·10⁵
modes) has local slope 0.491, 0.503, 0.5002 at 2γt = 50, 100, 300 (k* = 3.7, 4.6, 6.7; γ ≈ 0.33, so t = 100 is
2γt ≈ 67), and the real sum is a smooth cut-off, so no (a − 1)/(2k*) boundary correction appears; it is the grid's
shape, large t only at small N (t ≤ C_hi/N): on a rectangle N = 8-128, t = 10³-10⁵ the Volterra grid gives
β = 0.503, α = 1.52 with E fitted (seed 0), a grid too long for the quick book. Measured at seeds 0, 1, 2
(E held): α = 1.394 [1.219, 1.890], 1.724 [1.341, 2.065], 1.385 [1.188, 1.523] (positions 0.21, 0.58, 0.83);
β = 0.533 [0.473, 0.571], 0.475 [0.433, 0.525], 0.529 [0.499, 0.581] (positions 0.55, 0.50, 0.96). With the
former SGD draws (one generator for all sizes, float64 iterate) α positions were 0.11, 0.47, 0.91 and β 0.53,
0.27, 0.73, and at seeds 3, 4 α 0.76, 0.98, β 0.84, 0.22 (thin margins: these are 95% intervals around an estimate that carries the
draws' own bias, β 0.49-0.53 on their exact expectation). No fitting window set from the theory does better:
on the exact expectation (E held, seeds 0-2) t ≥ 30, 100, 300 or 1000 and N ≥ 4, 8 or 16 all leave β within
0.455-0.536. Counterexample: the same points read at N^1.5 and t^1.25 (exponents 1.0 and 0.4 against 1.5 and
0.5) are violated at every seed 0-4 (positions 1.5-5.3).

Reported beside x, not judged: its jackknife standard error ``x_se`` over the ``groups`` sets of projections
(:func:`jackknife_frontier`: leave one group out, read and fit again; √((G − 1)/G·Σ(x_{−g} − x̄)²)), the
scatter of the measured exponent from the projections and SGD together.

Reported beside their predictions, not judged: the exponents of N*(C) and of t*/N* with their 95% intervals
(the iso-compute curves are flat at their minimum, within 10% over a factor 2 in N, so N* scatters where L*
does not). With b = 2, (2.5, 2) (E fitted, earlier runs): β 0.76-0.80 against 0.75 and α 1.29-1.41 against 1.5
(the capacity term converges as N^{-(b−a+1)} = N^{-1/2}); at a − 1 ≤ 1.2 the fit is far off (α 1.35-1.55
against 1.0-1.2).

Law book (quick): phase Ia at (a, b) = (2.5, 3) (x = 3/8, N* ∝ C^{1/4}, t*/N* ∝ C^{1/2}), M = 2048, N = 4-128,
64 projections × 1 run, C = 10³-10⁵. The horizons are short (t* ≈ 3,000 at C = 10⁵, N* ≈ 33). Measured at
seeds 0, 1, 2: x = 0.3795, 0.366, 0.381 (errors 1.2%, 2.4%, 1.6% against 5%; the Volterra frontier of the same
draws 0.381, 0.363, 0.384; x_se 0.015, 0.007, 0.016); N* exponent 0.253 [0.171, 0.335], 0.253 [0.210, 0.296],
0.263 [0.171, 0.356] (predicted 0.25); t*/N* exponent 0.494 [0.329, 0.659], 0.494 [0.408, 0.579],
0.473 [0.287, 0.659] (predicted 0.5); the cut-off check's slope equals the Volterra one to 4 digits. (With
the former SGD draws: x = 0.387, 0.370, 0.378, errors 3.3%, 1.4%, 0.9%.) CPU ≈ 7-8 s per run on the loaded
2-core machine (SGD ≈ 3 s, the same as the former float64 kernel's within the machine's noise: 2.97-3.09 s
against 2.79-3.17 s, interleaved runs; these sizes are small, 64 projections, and step overhead sets the
time; the Chinchilla fit ≈ 1.3-2 s; the Volterra passes ≈ 2 s). The full law book (256 projections, 400
bootstrap replicates; CPU ≈ 19 s), seed 0: x = 0.378 (0.7%, x_se 0.004), the Volterra frontier 0.378;
Chinchilla (E held) α = 1.478 [1.382, 1.545], β = 0.507 [0.489, 0.523] (positions 0.33, 0.39; with the former
draws 0.41, 0.93; with E fitted β was 0.556 [0.536, 0.590], 0.5 outside).

Law book (full), phase II at (a, b) = (6, 4), chosen deep inside its phase: the terms that compete with the
frontier's F_pp = F_ac balance trail x by (b − 1)(a − 1 − b)/a = 1/2 (capacity F_0) and (2b − a)/a = 1/3 (SGD
noise K_pp) in exponent; x = 5/6, N* ∝ C^{1/3}, t*/N* ∝ C^{1/3}. M = 2048, N = 23-256 (factor √2), 512
projections × 1 run in 32 groups, ``stop_after`` = 2, C = 10⁵-3·10⁶ (t ≤ 6·10⁴; N* ≈ 44-142, all 13 optima
bracketed at every seed). Measured at seeds 0, 1, 2: x = 0.862, 0.867, 0.872 (+3.4%, +4.0%, +4.6%; x_se 0.012,
0.011, 0.011; the Volterra frontier of the same draws 0.869, 0.852, 0.874: +4.2%, +2.3%, +4.9%). The theory's
own expected frontier over this window (deterministic equivalent) is 0.8540, +2.5%, so the window is judged at
every seed, and the frontier **holds at seeds 0, 1 and 2, thinly** (margins 1.6, 1.0 and 0.4 points of the
5%): the drawn projections' exact frontiers average +3.4% ± 0.6% (256-512 projections, seeds 0-4), x_se ≈ 1.3%,
so about one seed in ten should land past 5% here (the DE's map below: the excess falls only slowly with C).
Under the former check, on the drawn projections' exact frontier, seeds 0 and 2 read inconclusive. Only
``frontier_exponent`` is judged here (the Chinchilla criteria apply in phase Ia only). N* exponent
0.332 [0.264, 0.400], 0.208 [0.133, 0.282], 0.289 [0.243, 0.334] (predicted 1/3); t*/N* exponent
0.336 [0.200, 0.473], 0.585 [0.435, 0.734], 0.422 [0.332, 0.513] (predicted 1/3). The cut-off does not bind
(the exact slope with the modes to 16M added is the same to 4 digits). One-pass SGD tracks the exact
expected loss to ≤ 1.8% in the exponent and the jackknife puts x's scatter at ≈ 1.3% of x: what keeps phase
II from being judged at every seed is the exact frontier's own excess, +3.8% on average over these seeds.
CPU ≈ 3.2 min per seed (184-201 s on the loaded machine: SGD 104-115 s over Σ_N t_stop(N)·N·R ≈ 8.8·10⁹
coordinate updates, ≈ 12 ns each in float32; the exact Volterra curves, both passes, 58-65 s; the
projections 14-17 s); the stops cut the SGD of N = 23, 32, 45 to C ≈ 1.2-1.7·10⁵, 3.7-5.5·10⁵, 1.2-1.5·10⁶.
All three parts grow linearly with the projections. **With 1024 projections (``replicates=1024``, the rest
as the entry) the frontier holds at seeds 0, 1 and 2**: x = 0.864, 0.868, 0.857 (+3.7%, +4.1%, +2.8%; x_se
0.009, 0.007, 0.009), the Volterra frontier of the same draws 0.860, 0.856, 0.863 (+3.2%, +2.7%, +3.6%, under
the 4% precondition by 0.4-1.3%), N* 45-126, all 13 optima bracketed; CPU 389-391 s a seed (SGD 214-219 s,
Volterra 133-137 s, projections 28-33 s). 2048 projections: ≈ 13 min a seed (extrapolated, not run).

The former entry (N = 16-512, 256 projections, the float64 numpy kernel at ≈ 27 ns an update, no stops):
x = 0.856, 0.860, 0.876 (+2.7%, +3.2%, +5.1%; Volterra 0.860, 0.855, 0.886: +3.2%, +2.6%, +6.3%), held at
seeds 0 and 1, inconclusive at 2; N* exponent 0.324, 0.291, 0.171; CPU 202-213 s a seed. The same entry with
this kernel: 182 s (SGD 90 s, Volterra 56 s, projections 32 s; seed 0: x = 0.870, x_se 0.012, the SGD noise
drawn by a first revision of the kernel, short last chunks), and
``stop_after`` = 2 would cut its SGD by 16%. With 64 projections: x = 0.902, 0.831, 0.879, the Volterra
frontier 0.907, 0.826, 0.884, held at seed 1 only.

Law book (full), phase III at (a, b) = (9, 3), the DE map's reachable entry (below): x = 1 − 1/(2b) = 5/6,
N* ∝ C^{1/2}, t*/N* ∝ C^0; M = 2048, N = 128-1024 (factor √2), 256 projections × 1 run in 32 groups,
C = 7·10⁴-10⁶ (t ≤ 7,800). The theory's own expected frontier over this window (DE): 0.8458 (+1.5%). Measured at seeds
0, 1, 2: x = 0.830, 0.858, 0.842 (−0.4%, +3.0%, +1.0%: **holds at every seed**; x_se 0.014, 0.017, 0.022; the exact frontier of the same draws 0.836, 0.850, 0.841). The window first chosen, C = 10⁵-10⁶, read seed 2 inconclusive (its optimum at C = 10⁶ sat
at N = 1024, the grid's end, leaving bracketed optima over less than a decade); starting the window at 7·10⁴
keeps a decade bracketed without a larger (costlier) N. Seeds 0 and 1 on that first window: x = 0.834, 0.842
(+0.1%, +1.1%, x_se 0.035, 0.022). CPU 157-164 s a seed, mostly the projections (N_max²·M each).

Where it fails, and what was not reached (issue 15 asks for a second phase within 5% at seeds 0, 1, 2: met by
the phase-III entry above, and thinly by phase II; what follows maps why phase II is not closer): the
exact Volterra frontier of drawn projections (no SGD), measured here:

* phase II at (6, 4), the former full entry's grid (N = 16-512): +8.9%, −0.9%, +6.1% at seeds 0, 1, 2 with 64 projections; a
  jackknife over the projections at seed 0 gives a standard error of 2.6% (leaving any one projection out
  moves the slope by < 1%: no outlier, a broad scatter); with 256 projections +3.2%, +2.6%, +6.3%, +1.3%,
  +2.4% (seeds 0-4: mean +3.2%, spread 1.9%). Over one-decade windows at M = 4096, N ≤ 1024 (64
  projections, seed 0): −1.1, +4.5, +1.2, +3.7, +3.5% for C from 10^4.5 to 10^7.5; (5.5, 3.5): +4.3, +1.0,
  +3.9, +3.7, +2.4%. So a pre-asymptotic excess of ≈ +3% that is not yet falling by C = 3·10⁷, under a
  draw-to-draw scatter of ±2-3% at 64-256 projections;
* phase II at (4.6, 3): 0.807, 0.824 against 0.783 (+3%, +5%) over C = 10⁴-2·10⁶ (16-64 projections,
  M = 2048-4096, N ≤ 724, seeds 0, 1), the local slope still falling; (4.1, 2.5): +6%, +9% over C ≤ 2·10⁵;
  (3.5, 2): every competing term within 0.14 in exponent, 0.62 against 0.714;
* phase III at (9, 3): 0.862, 0.894 against 0.833 (+3%, +7%) over C = 10⁴-2·10⁶ (R = 16), 0.877, 0.894 at
  R = 64 over C ≤ 2·10⁵; (6, 2): +5%, +18%. The projections' scatter is large here too (the target is mostly
  the first mode, whose leakage into K's bulk sets F_ac): 16 draws move the slope by ±5%;
* phase Ia at (2.5, 2): slope 0.48 ± 0.02 over C = 10³-10⁵ (R = 64, seeds 0-4: −1.7% to −5.8%), settling at
  0.49-0.51 only for C ≥ 10⁵ (N* ≥ 100); (2.2, 1.5): 0.44-0.45 against 0.48 (−6 to −8%: a − 1 near b).

Judging phase II within 5% at every seed would need the exact frontier's excess ≲ 2% and the scatter ≲ 1%
(≈ 1,000 projections, from the spread of 1.9% at 256) at C ≳ 10⁸, N ≳ 2·10³, M ≳ 8·10³: the projections
alone (N²M per projection, 0.75 s of CPU at N = 1024, M = 4096, so ≈ 6 s at N = 2048, M = 8192) would take
≈ 100 min, before SGD. Not attempted.

The expected frontier without projections: the deterministic equivalent (DE) of the projection-averaged SGD
risk (:func:`lmech.theory.scaling.expected_sgd_risk`, :func:`~lmech.theory.scaling.expected_frontier`:
Silverstein's equation for K's spectrum and for gᵀ(K − z)^{-1}g, Paquette et al.'s Volterra equation on its
quadrature; γ = ``sgd_lr``/E tr K, M = ∞ allowed). Against drawn projections (tests/theory/test_scaling_de.py:
N = 48, within the draws' s.e.; and at N = 1024, M = 8192, 12 projections: K's eigenvalue counts below x to
0.1%, the risk at t = 10⁴-10⁷ within −4% to +8% of the draws' mean, their s.e. 5-7%) it reproduces most of the
exact frontier's pre-asymptotic excess:

* the phase-II grid ((6, 4), M = 2048, C = 10⁵-3·10⁶, t ≤ 6·10⁴; N = 23-256 or the former 16-512, the same
  optima N* = 46-123): DE x = 0.8540 (+2.5%), against the exact frontiers of the drawn projections' mean +3.2,
  +2.6, +6.3, +1.3, +2.4% (256 projections, seeds 0-4) and +4.2, +2.3, +4.9% (512, seeds 0-2), together
  +3.4% ± 0.6% (s.e.): the theory's own finite-C slope is ≈ +2.5%, the rest (≈ 1%, 1.6 s.e.) the DE's O(1/N)
  error at N* ≈ 50-120 (it puts L_N 8% low at N = 48) or the per-draw step γ = ``sgd_lr``/tr K of the entry;
* local slope x(C)/x − 1 of the DE frontier over one-decade windows starting at C = 10⁴, 10⁵, …, 10⁹ (M = ∞;
  at (9, 3) M = 1448-4096 give the same to 4 digits):

  - phase II (6, 4): +3.0, +2.6, +2.1, +1.7, +1.4, +1.1% (N* = 23 → 1,400): below 1.5% from C ≈ 10⁸ on,
    1% only past 10¹⁰;
  - phase II (5.5, 3.5): +3.0, +2.5, +2.0, +1.5, +1.1, +0.8% (N* = 29 → 2,800): 1.5% at 10⁷-10⁸, 1% at ≈ 3·10⁸-3·10⁹;
  - phase II (7, 4.5): +5.3, +3.5, +2.5, +1.8, +1.2, +0.8% (N* = 23 → 1,700): 1.5% at ≈ 3·10⁷, 1% at ≈ 10⁹;
  - phase III (9, 3): +3.4, +1.4, +0.55, +0.32, +0.09, +0.02% (N* = 81 → 75,000): 1.5% from C ≈ 10⁵, 1% from
    ≈ 3·10⁵;
  - phase III (12, 4): +2.4, +0.9, +0.5, +0.2, +0.07, +0.06% (N* = 69 → 57,000; less smooth at C < 3·10⁵, where
    the target sits in the first isolated eigenvalues of K).

  The phase-II excess decays slowly (≈ halving over four decades of C, as the trailing terms at 1/2 and 1/3
  in exponent suggest); phase III's fast. A phase-II entry at ≤ 1.5% needs C ≳ 10⁷-10⁸, i.e. SGD over
  Σ_N N·t_max(N)·R = (number of sizes)·C_hi·R ≈ 7·10⁸·512 ≈ 4·10¹¹ coordinate updates (≈ 50 min at 8 ns), out of
  reach of a 4-minute entry; within it (C_hi ≲ 10⁷) the best phase-II window, (5.5, 3.5) at 10⁶-10⁷, is +2.0%.
* the reachable entry: phase III at (9, 3), M = 2048, N = 128-1024 (factor √2, 7 sizes), C = 10⁵-10⁶,
  t_max = C_hi/N ≤ 7,800: DE x = 0.8446 against 5/6 (+1.36%), all 9 optima (N* = 248-768) bracketed, the same
  to 4 digits at M = 1448, 4096 and ∞ (the cut-off does not bind); at C = 6·10⁴-6·10⁵ with N ≤ 724, +1.62%.
  The exact (Volterra) frontier of 256 drawn projections on this grid (``draw_projections``, γ = ``sgd_lr``/tr K
  of each draw, read as :func:`read_frontier` does; no SGD): x = 0.830, 0.846, 0.841 at seeds 0, 1, 2 (−0.4%,
  +1.5%, +0.9%; jackknife s.e. 1.4%, 1.2%, 1.3%), all inside the 4% precondition, against the DE's +1.4% (48
  projections: −4.7% ± 3.3%, +4.2% ± 3.0% at seeds 0, 1). The precondition then fails with probability ≈ 2% a
  seed at 256 projections (≈ 0.4% at 512). Cost: SGD 7·C_hi·R = 7·10⁶·R updates (R = 256: 14 s at 8 ns, 21 s at
  12 ns); the projections (N_max = 1024, M = 2048) 135-150 s of CPU at R = 256 on the loaded machine (0.55 s
  each); one exact Volterra pass 13-18 s (two with the cut-off check): ≈ 3.3 min a seed at R = 256, ≈ 6.5 min
  at 512. The SGD itself was not run here (the lead integrates the entry).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from lmech.config import MAX_ELEMENTS, check_budget, spec
from lmech.data.synthetic import generator
from lmech.errors import BadInput
from lmech.experiments.base import Counterexample, Criterion, Experiment, NullProgress, Progress, Result, RunConfig
from lmech.experiments.registry import register
from lmech.experiments.scaling_exponents import Draws, draw_phase_diagram, draw_projections, sgd_losses
from lmech.laws.power_law import log_log_fit
from lmech.theory import scaling as S

#: verdict tolerances (module docstring)
FRONTIER_TOL = 0.05
#: the exact (Volterra) frontier's slope must be within this share of the tolerance of the asymptote
PREASYMPTOTIC_SHARE = 0.8
#: the cut-off binds when the exact frontier's slope moves by more than this share of x once the modes up to
#: CUTOFF_EXTRA·M are added (:func:`lmech.theory.scaling.with_cutoff_tail`; scaling-exponents' CUTOFF_SHIFT)
CUTOFF_SHIFT = 0.02
CUTOFF_EXTRA = 16
#: the Volterra risk's relative block (:func:`lmech.theory.scaling.sgd_volterra`)
VOLTERRA_BLOCK = 0.002
#: the fewest bracketed optima in the fit window, and its smallest span in C
MIN_POINTS = 6
MIN_SPAN = 10.0
#: log-spaced recording of the loss curves (points per decade of t)
PER_DECADE = 24
#: every 10th of the 4,500 starts of Hoffmann et al. (module docstring)
START_STRIDE = 10
#: the Chinchilla fit takes every 3rd recorded step (8 a decade)
FIT_STRIDE = 3
#: the Chinchilla fit holds E at the theory's 0, numerically this share of the smallest loss it fits
E_HELD = 1e-12
#: the predicted α and β must lie within the fit's 95% bootstrap interval: position <= 1 (interval_position)
CHINCHILLA_TOL = 1.0
#: ``stop_after``: a size is no longer needed at C once each of the next two larger sizes is better by this share
HORIZON_MARGIN = 0.02
#: the seed offset of the SGD draws: one generator per model size (seed + SGD_SEED + SIZE_STRIDE·N), so a size's
#: draws do not depend on how long the other sizes ran
SGD_SEED, SIZE_STRIDE = 43, 1_000_003
#: the counterexample's clocks: N → N^1.5 and t → t^1.25 make α and β fitted 1/1.5 and 1/1.25 of the truth
TILT_N, TILT_T = 1.5, 1.25


def _increasing(name: str, values, least: int) -> None:
    if len(values) < least or list(values) != sorted(set(values)):
        raise BadInput(name, values, f"at least {least} distinct increasing values")


@dataclass(frozen=True)
class ScalingFrontierConfig(RunConfig):
    spectrum_exponent: float = spec(3.0, "b: feature variances λ_k = k^-b (the theory needs b > 1)", min=-1e3, max=8.0)
    target_exponent: float = spec(2.5, "a: target power λ_k w*_k² = k^-a (the theory needs a > 1)", min=-1e3, max=16.0)
    features: int = spec(2048, "cut-off M: number of features", min=16, max=2**17)
    model_sizes: tuple[int, ...] = spec((4, 6, 8, 11, 16, 23, 32, 45, 64, 91, 128), "model sizes N of the (N, t) "
                                        "grid (increasing, log-spaced)", min=2, max=2048, max_items=32)
    replicates: int = spec(64, "independent projections A", min=1, max=1024)
    chains: int = spec(1, "independent one-pass SGD runs per projection", min=1, max=256)
    sgd_lr: float = spec(0.4, "SGD step γ in units of 1/tr K of the draw (at most 1/2: the Volterra kernel's mass is "
                         "then <= 1/2, the expected loss bounded)", min=0.0, max=0.5, min_exclusive=True)
    batch: int = spec(1, "SGD batch size B (compute C = N·t·B)", min=1, max=1024)
    compute_window: tuple[float, float] = spec((1e3, 1e5), "(C_lo, C_hi): the compute budgets of the frontier's fit",
                                               min=1.0, max=1e12, max_items=2)
    max_steps: int = spec(8000, "the longest SGD run (steps); t_max(N) = min(max_steps, C_hi/(N·B))", min=10,
                          max=10**7)
    fit_from_step: int = spec(100, "the Chinchilla fit uses the grid's points t >= this (then 2γt ≳ 70 and the time "
                              "sum's local slope is within 1% of (a − 1)/b)", min=1, max=10**6)
    fit_from_size: int = spec(8, "... and N >= this (below it, the random capture of the first modes dominates the "
                              "capacity term)", min=1, max=2048)
    groups: int = spec(8, "sets of projections whose mean curves the Chinchilla fit's bootstrap resamples", min=2,
                       max=256)
    bootstrap: int = spec(60, "bootstrap replicates of the Chinchilla fit", min=10, max=10_000)
    stop_after: float = spec(0.0, "0: every N runs to t_max(N); else (>= 2) N stops at this factor times the first "
                             "compute at which the next two larger sizes are each better by 2% on the exact "
                             "(Volterra) curves of the same draws (it can no longer be the optimum nor its "
                             "neighbour)", min=0.0, max=1e3)

    @property
    def a(self) -> float:
        return float(self.target_exponent)

    @property
    def b(self) -> float:
        return float(self.spectrum_exponent)

    def horizon(self, n: int) -> int:
        """t_max(N): the last recorded step of the model of size N."""
        return int(min(self.max_steps, math.ceil(self.compute_window[1] / (n * self.batch))))

    def check(self) -> None:
        super().check()
        S.check_task(self.target_exponent, self.spectrum_exponent)
        _increasing("model_sizes", self.model_sizes, 3)
        if self.groups > self.replicates:
            raise BadInput("groups", self.groups, f"at most replicates = {self.replicates} (a group holds projections)")
        if self.model_sizes[-1] >= self.features:
            raise BadInput("model_sizes", self.model_sizes, f"sizes below the features M = {self.features}")
        if len(self.compute_window) != 2 or not self.compute_window[0] < self.compute_window[1]:
            raise BadInput("compute_window", self.compute_window, "two budgets (C_lo, C_hi), C_lo < C_hi")
        if self.compute_window[1] > self.model_sizes[-1] * self.batch * self.max_steps:
            raise BadInput("compute_window", self.compute_window, f"C_hi <= N_max·B·max_steps = "
                           f"{self.model_sizes[-1] * self.batch * self.max_steps:g} (the largest model must reach it)")
        if self.compute_window[0] < self.model_sizes[0] * self.batch:
            raise BadInput("compute_window", self.compute_window, "C_lo >= N_min·B (one step of the smallest model)")
        check_budget("model_sizes", self.model_sizes, self.model_sizes[-1] * self.features, MAX_ELEMENTS,
                     "entries of a projection (N_max·M)")
        if self.stop_after != 0 and not self.stop_after >= 2:
            raise BadInput("stop_after", self.stop_after, "0 (off) or a safety factor >= 2 in compute")
        work = sum(self.horizon(n) * n for n in self.model_sizes) * self.batch * self.replicates * self.chains
        check_budget("chains", self.chains, work, 10**11, "SGD sample entries (Σ_N t_max(N)·N·B·replicates·chains)")


# ================================================================================ the frontier's reading

def _record_steps(horizon: int) -> np.ndarray:
    count = max(2, int(PER_DECADE * math.log10(max(horizon, 10))) + 1)
    return np.unique(np.round(np.geomspace(1, horizon, count)).astype(np.int64))


def read_frontier(curves: pd.DataFrame, budgets, batch: int = 1, column: str = "loss") -> pd.DataFrame:
    """The compute-optimal frontier of a grid of loss curves (module docstring).

    ``curves``: rows (model_size, step, ``column``); ``budgets``: the C at which to read. Returns, per C, the
    optimum ``loss`` L*, ``model_size`` N*, ``steps`` t* = C/(N*B), ``ratio`` t*/N* and ``bracketed`` (False
    when the smallest value sits at an end of the N available at that C: then the optimum is the end's)."""
    by_n = {int(n): (np.log(part["step"].to_numpy(float)), np.log(part[column].to_numpy(float)))
            for n, part in curves[curves.step > 0].sort_values("step").groupby("model_size")}
    sizes = np.array(sorted(by_n))
    budgets = np.asarray(budgets, float)
    iso = np.full((budgets.size, sizes.size), np.nan)  # L(N, C/(N·B)) where N's curve reaches that step
    for k, n in enumerate(sizes):
        lt, ll = by_n[int(n)]
        t = np.log(budgets / (n * batch))
        reach = (lt[0] - 1e-9 <= t) & (t <= lt[-1] + 1e-9)
        iso[reach, k] = np.exp(np.interp(t[reach], lt, ll))
    return frontier_frame(S.frontier_of(sizes, budgets, iso), batch)


def frontier_frame(frontier: dict[str, np.ndarray], batch: int) -> pd.DataFrame:
    """:func:`lmech.theory.scaling.frontier_of`'s arrays as the frontier table, with ``steps`` t* = C/(N*B) and
    ``ratio`` t*/N*; the budgets with fewer than 3 sizes (no optimum read) are left out."""
    c, n_star = np.asarray(frontier["compute"], float), np.asarray(frontier["model_size"], float)
    frame = pd.DataFrame({"compute": c, "loss": np.asarray(frontier["loss"], float), "model_size": n_star,
                          "steps": c / (n_star * batch), "ratio": c / (n_star**2 * batch),
                          "bracketed": np.asarray(frontier["bracketed"], bool)})
    return frame[np.isfinite(frame.loss)].reset_index(drop=True)


def _window_budgets(window) -> np.ndarray:
    lo, hi = window
    return np.geomspace(lo, hi, max(8, int(round(8 * math.log10(hi / lo))) + 1))


def _budgets(cfg: ScalingFrontierConfig) -> np.ndarray:
    return _window_budgets(cfg.compute_window)


def fit_frontier(frontier: pd.DataFrame, cfg: ScalingFrontierConfig) -> pd.DataFrame:
    """log-log fits of L*, N* and t*/N* against C over the bracketed optima of the window: the exponent (L*:
    −slope) with its 95% interval, per quantity."""
    lo, hi = cfg.compute_window
    ok = frontier[frontier.bracketed & (frontier.compute >= lo * (1 - 1e-9)) & (frontier.compute <= hi * (1 + 1e-9))]
    rows = []
    for key, sign in (("loss", -1.0), ("model_size", 1.0), ("ratio", 1.0)):
        if len(ok) < 3:
            rows.append({"quantity": key, "measured": float("nan"), "low": float("nan"), "high": float("nan"),
                         "points": len(ok), "first": float("nan"), "last": float("nan")})
            continue
        fit = log_log_fit(ok["compute"].to_numpy(), ok[key].to_numpy())
        ends = sorted(sign * v for v in fit.slope_interval)
        rows.append({"quantity": key, "measured": sign * fit.slope, "low": ends[0], "high": ends[1],
                     "points": fit.n, "first": float(ok.compute.min()), "last": float(ok.compute.max())})
    return pd.DataFrame(rows)


# ================================================================================ prediction

#: the DE frontier's quadrature (:func:`lmech.theory.scaling.expected_sgd_risk`): cells of relative width 0.03 and
#: modes with γμ·t_max < 1e-3 left in the floor move its slope by < 1e-5 against 0.01 and 1e-4 (the quick Ia grid:
#: 0.374437 vs 0.374454) for half the CPU
DE_SPACING, DE_CUT = 0.03, 1e-3


def expected_frontier_fit(cfg: ScalingFrontierConfig) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The deterministic equivalent's frontier on the config's sizes and budgets (no projection drawn,
    :func:`lmech.theory.scaling.expected_frontier`) and its fits over the window, read as the measurement's."""
    frame = _expected_frontier(cfg.a, cfg.b, cfg.features, tuple(int(n) for n in cfg.model_sizes), cfg.sgd_lr,
                               cfg.batch, tuple(float(c) for c in cfg.compute_window))
    return frame.copy(), fit_frontier(frame, cfg)


@functools.lru_cache(maxsize=16)
def _expected_frontier(a, b, features, sizes, sgd_lr, batch, window) -> pd.DataFrame:
    fr = S.expected_frontier(a, b, features, np.array(sizes), sgd_lr, batch, _window_budgets(window),
                             spacing=DE_SPACING, cut=DE_CUT)
    return frontier_frame(fr, batch)


def predict_frontier(cfg: ScalingFrontierConfig) -> Result:
    """The asymptotic exponents of the task's phase, and the deterministic equivalent's frontier slope over the
    config's window (the theory's own finite-C exponent; no training, no projection drawn)."""
    ex = S.exponents(cfg.a, cfg.b)
    summary = {"predicted_loss_exponent": ex.compute_loss, "predicted_model_exponent": ex.compute_model,
               "predicted_ratio_exponent": ex.compute_ratio, "predicted_alpha": ex.model,
               "predicted_beta": ex.time, "phase": ex.phase.name}
    series = {}
    if ex.phase.boundary is None:
        frontier, fits = expected_frontier_fit(cfg)
        series = {"frontier_de": frontier, "fits_de": fits}
        summary["de_loss_exponent"] = float(fits.set_index("quantity").loc["loss", "measured"])
    return Result(summary=summary, series=series, arrays={"exponents": ex})


# ================================================================================ measurement

def stop_steps(cfg: ScalingFrontierConfig, curves: dict[int, tuple[np.ndarray, np.ndarray]]) -> dict[int, int]:
    """The last step each model size must reach (``stop_after``; module docstring): ``curves`` maps N to its
    recorded steps (from 0) and its mean exact loss there. Size N_k stops at ``stop_after`` times the first
    compute C = N_k·t·B at which L(N_{k+1}, C) <= L(N_k, C)/(1 + m) and L(N_{k+2}, C) <= L(N_{k+1}, C)/(1 + m)
    (m = :data:`HORIZON_MARGIN`): on an iso-compute curve with one minimum, the minimum then sits at N_{k+2} or
    beyond, so N_k is neither the optimum nor the parabola's neighbour of it (:func:`read_frontier`), and the
    minimum only moves to larger N as C grows (N* ∝ C^y, y > 0). Never later than t_max(N); once N_{k+1}'s curve
    has ended (C beyond it), that C counts as the trigger too (``stop_after`` times it: conservative, N_{k+1} had
    already been beaten twice). With ``stop_after`` = 0: t_max(N) for every N."""
    sizes = sorted(int(n) for n in cfg.model_sizes)
    stop = {n: cfg.horizon(n) for n in sizes}
    if not cfg.stop_after:
        return stop
    B = cfg.batch

    def log_loss(n, c):
        steps, loss = curves[n]
        t = c / (n * B)
        if not 1 <= t <= min(steps[-1], stop[n]) * (1 + 1e-12):
            return None
        return float(np.interp(math.log(t), np.log(steps[1:]), np.log(loss[1:])))

    margin = math.log1p(HORIZON_MARGIN)
    for k in range(len(sizes) - 3, -1, -1):
        n, n1, n2 = sizes[k], sizes[k + 1], sizes[k + 2]
        steps, _ = curves[n]
        c_stop = None
        for t in steps[1:]:
            c = float(n * t * B)
            if c > n1 * stop[n1] * B:  # N_{k+1} has stopped: N_k is not needed either
                c_stop = c
                break
            here, one, two = log_loss(n, c), log_loss(n1, c), log_loss(n2, c)
            if None not in (here, one, two) and one <= here - margin and two <= one - margin:
                c_stop = c
                break
        if c_stop is not None:
            stop[n] = min(stop[n], int(math.ceil(cfg.stop_after * c_stop / (n * B))))
    return stop


def sgd_grid(cfg: ScalingFrontierConfig, draws: Draws, progress: Progress) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One-pass SGD on every model size (module docstring; the kernel :func:`lmech.experiments.scaling_exponents.
    sgd_losses`, float32 draws and iterate). Returns the grid, per (N, step) the mean population loss over
    replicates × chains beside the mean Volterra risk of the same draws (``predicted``; ``predicted_tail`` with
    the modes beyond M added), and the same mean within each of ``groups`` sets of projections (for the
    Chinchilla fit's cluster bootstrap and the frontier's jackknife). Each size runs to t_max(N), or to its stop
    (:func:`stop_steps`) when ``stop_after`` is set: its curve is then a prefix of the full one (same draws)."""
    R, C, B = cfg.replicates, cfg.chains, cfg.batch
    G = cfg.groups
    exact = {}
    for n in cfg.model_sizes:
        mu, theta, floor = draws.at(int(n))
        steps = np.concatenate([[0], _record_steps(cfg.horizon(int(n)))])
        lr = cfg.sgd_lr / mu.sum(-1)  # (R,)
        exact[int(n)] = (steps, S.sgd_volterra(mu, mu * theta**2, lr, B, steps, floor, block=VOLTERRA_BLOCK))
    stop = stop_steps(cfg, {n: (steps, pred.mean(0)) for n, (steps, pred) in exact.items()})
    rows, group_rows = [], []
    for n in cfg.model_sizes:
        n = int(n)
        mu, theta, floor = draws.at(n)
        steps, predicted = exact[n]
        keep = int(np.searchsorted(steps, stop[n])) + 1  # through the first recorded step >= the stop
        steps, predicted = steps[:keep], predicted[:, :keep].mean(0)
        lr = cfg.sgd_lr / mu.sum(-1)
        mu_tail, power_tail, floor_tail = S.with_cutoff_tail(mu, theta, floor, cfg.a, cfg.b, cfg.features, CUTOFF_EXTRA)
        tail = S.sgd_volterra(mu_tail, power_tail, lr, B, steps, floor_tail, block=VOLTERRA_BLOCK).mean(0)
        gen = generator(cfg.seed + SGD_SEED + SIZE_STRIDE * n)
        out = sgd_losses(mu, theta, floor, lr, B, C, steps, gen, progress, whole_chunks=True)
        progress.advance(cfg.horizon(n) - int(steps[-1]))
        mean = out.mean(0)
        rows += [{"model_size": n, "step": int(s_), "loss": float(v), "predicted": float(p),
                  "predicted_tail": float(q)} for s_, v, p, q in zip(steps, mean, predicted, tail)]
        by_group = out[: (R // G) * G].reshape(G, R // G, len(steps)).mean(1)
        group_rows += [{"group": g, "model_size": n, "step": int(s_), "loss": float(by_group[g, k])}
                       for g in range(G) for k, s_ in enumerate(steps)]
    return pd.DataFrame(rows), pd.DataFrame(group_rows)


def chinchilla_fit(cfg: ScalingFrontierConfig, groups: pd.DataFrame):
    r""":func:`lmech.laws.scaling.fit_scaling` of :math:`L = E + A/N^\alpha + B/D^\beta` (Hoffmann et al. 2022,
    eq. 2, D = t·B) on the group-mean curves' points t >= fit_from_step and N >= fit_from_size (module
    docstring), every ``FIT_STRIDE``-th recorded step, with E held at the theory's floor 0 (noise-free target:
    numerically :data:`E_HELD` of the smallest loss fitted); the bootstrap resamples whole groups of
    projections."""
    from lmech.laws.scaling import chinchilla_grid, fit_scaling

    pts = groups[(groups.step >= cfg.fit_from_step) & (groups.model_size >= cfg.fit_from_size)
                 & np.isfinite(groups.loss) & (groups.loss > 0)]
    steps = np.sort(pts.step.unique())[::FIT_STRIDE]
    pts = pts[pts.step.isin(steps)]
    if len(pts) < 5:
        return None
    return fit_scaling(pts.model_size.to_numpy(float), (pts.step * cfg.batch).to_numpy(float), pts.loss.to_numpy(),
                       bootstrap=cfg.bootstrap, seed=cfg.seed, groups=pts.group.to_numpy(),
                       starts=chinchilla_grid()[::START_STRIDE], fixed_E=E_HELD * float(pts.loss.min()))


def _chinchilla_table(fit) -> pd.DataFrame:
    if fit is None:
        return pd.DataFrame(columns=["param", "fitted", "low", "high"])
    iv = fit.intervals()
    return pd.DataFrame([{"param": k, "fitted": float(fit.params[k]), "low": iv[k][0], "high": iv[k][1]}
                         for k in ("alpha", "beta", "A", "B", "E")])


def analyse(cfg: ScalingFrontierConfig, grid: pd.DataFrame, groups: pd.DataFrame | None) -> dict[str, pd.DataFrame]:
    """The frontiers (measured and Volterra), their fits, and the Chinchilla fit of a grid."""
    budgets = _budgets(cfg)
    measured = read_frontier(grid, budgets, cfg.batch, "loss")
    exact = read_frontier(grid, budgets, cfg.batch, "predicted")
    out = {"frontier": measured, "frontier_volterra": exact, "fits": fit_frontier(measured, cfg),
           "fits_volterra": fit_frontier(exact, cfg)}
    if "predicted_tail" in grid:
        out["fits_cutoff"] = fit_frontier(read_frontier(grid, budgets, cfg.batch, "predicted_tail"), cfg)
    if groups is not None:
        out["chinchilla"] = _chinchilla_table(chinchilla_fit(cfg, groups))
        out["jackknife"] = jackknife_frontier(cfg, groups)
    return out


def jackknife_frontier(cfg: ScalingFrontierConfig, groups: pd.DataFrame) -> pd.DataFrame:
    r"""Leave-one-group-out frontier exponents: per group g of projections, x fitted on the grid averaged over the
    other groups (read and fitted as the law's, :func:`read_frontier`, :func:`fit_frontier`). The jackknife standard
    error of x (Efron & Stein 1981; Efron & Tibshirani 1993, eq. 11.5) is
    :math:`\sqrt{\tfrac{G-1}{G}\sum_g (x_{-g} - \bar x_{-})^2` (:func:`jackknife_se`)."""
    budgets = _budgets(cfg)
    rows = []
    for g in sorted(groups.group.unique()):
        rest = groups[groups.group != g].groupby(["model_size", "step"], as_index=False).loss.mean()
        fits = fit_frontier(read_frontier(rest, budgets, cfg.batch), cfg).set_index("quantity")
        rows.append({"group": int(g), "loss_exponent": float(fits.loc["loss", "measured"])})
    return pd.DataFrame(rows, columns=["group", "loss_exponent"])


def jackknife_se(values) -> float:
    """The jackknife standard error √((G − 1)/G Σ (x_g − x̄)²) of G leave-one-out estimates (nan if any is)."""
    v = np.asarray(values, float)
    if v.size < 2 or not np.all(np.isfinite(v)):
        return float("nan")
    return float(math.sqrt((v.size - 1) / v.size * np.sum((v - v.mean()) ** 2)))


def measure_frontier(cfg: ScalingFrontierConfig, progress: Progress | None = None) -> Result:
    progress = progress or NullProgress()
    progress.start(sum(cfg.horizon(int(n)) + 1 for n in cfg.model_sizes), "SGD over the (N, t) grid")
    draws = draw_projections(cfg)
    grid, groups = sgd_grid(cfg, draws, progress)
    diverged = None if np.all(np.isfinite(grid.loss.to_numpy())) else 0
    series = {"grid": grid, "groups": groups}
    summary = {}
    if diverged is None:
        series |= analyse(cfg, grid, groups)
        fits = series["fits"].set_index("quantity")
        summary = {"measured_loss_exponent": float(fits.loc["loss", "measured"]),
                   "measured_model_exponent": float(fits.loc["model_size", "measured"]),
                   "measured_ratio_exponent": float(fits.loc["ratio", "measured"])}
        ch = series["chinchilla"].set_index("param") if len(series["chinchilla"]) else None
        if ch is not None:
            summary |= {"fitted_alpha": float(ch.loc["alpha", "fitted"]), "fitted_beta": float(ch.loc["beta", "fitted"])}
    return Result(series=series, summary=summary, diverged_at=diverged)


# ================================================================================ the law

def frontier_precondition(cfg: ScalingFrontierConfig, measurement: Result, prediction: Result | None = None) -> str | None:
    """Why the frontier exponent cannot be judged on this run (module docstring), or None. The pre-asymptotic
    check reads the deterministic equivalent's slope over the window (``prediction``'s, else computed)."""
    ph = S.phase(cfg.a, cfg.b)
    if ph.boundary:
        return f"phase boundary: {ph.boundary} (logarithmic corrections)"
    fits = measurement.series["fits"].set_index("quantity")
    row = fits.loc["loss"]
    if row["points"] < MIN_POINTS or not row["last"] / row["first"] >= MIN_SPAN:
        return (f"too few bracketed optima in the window: {int(row['points'])} over C = {row['first']:.3g}-"
                f"{row['last']:.3g} (need {MIN_POINTS} over a decade; widen model_sizes or max_steps)")
    exact = float(measurement.series["fits_volterra"].set_index("quantity").loc["loss", "measured"])
    pred = S.exponents(cfg.a, cfg.b).compute_loss
    if "fits_cutoff" in measurement.series:
        tail = float(measurement.series["fits_cutoff"].set_index("quantity").loc["loss", "measured"])
        if not abs(tail - exact) <= CUTOFF_SHIFT * pred:
            return (f"the cut-off M binds: the exact (Volterra) frontier's slope is {exact:.4g} at M = {cfg.features} "
                    f"and {tail:.4g} with the modes up to {CUTOFF_EXTRA}M added (more than {CUTOFF_SHIFT:.0%} of x apart)")
    de = (prediction.summary.get("de_loss_exponent") if prediction is not None else None)
    if de is None:
        de = float(expected_frontier_fit(cfg)[1].set_index("quantity").loc["loss", "measured"])
    if not math.isfinite(de):
        return "the deterministic equivalent's frontier has too few bracketed optima in the window"
    if not abs(de / pred - 1) <= PREASYMPTOTIC_SHARE * FRONTIER_TOL:
        return (f"pre-asymptotic window: the theory's own expected frontier (deterministic equivalent, no draws) has "
                f"slope {de:.4g} over it, {abs(de / pred - 1):.1%} from the asymptotic {pred:.4g} (more than "
                f"{PREASYMPTOTIC_SHARE * FRONTIER_TOL:.1%})")
    return None


#: where the Chinchilla criteria apply: in phases II and III F_ac ∝ N^-1 t^-(1-1/b) couples N and t
IA_ONLY = "phase Ia (a − 1 < b): the loss has the additive Chinchilla form there only"


def _in_phase_ia(cfg) -> bool:
    try:
        return S.phase(cfg.target_exponent, cfg.spectrum_exponent).name == "Ia"
    except BadInput:
        return False


def chinchilla_precondition(cfg: ScalingFrontierConfig, measurement: Result) -> str | None:
    """Why the Chinchilla fit's exponents cannot be judged on this run (module docstring), or None."""
    ph = S.phase(cfg.a, cfg.b)
    if ph.boundary:
        return f"phase boundary: {ph.boundary} (logarithmic corrections)"
    if ph.name != "Ia":
        return (f"phase {ph.name}: F_ac ∝ N^-1 t^-(1-1/b) couples N and t, the loss has no Chinchilla form "
                "E + A/N^α + B/t^β")
    if not len(measurement.series.get("chinchilla", ())):
        return "too few grid points for the Chinchilla fit (t >= fit_from_step, N >= fit_from_size)"
    return None


def _x_se(measurement: Result) -> float:
    """The jackknife standard error of the measured frontier exponent over the groups of projections."""
    jack = measurement.series.get("jackknife")
    return jackknife_se(jack.loss_exponent) if jack is not None and len(jack) else float("nan")


def chinchilla_report(cfg: ScalingFrontierConfig, measurement: Result) -> dict | None:
    """The Chinchilla fit's α and β beside the predicted a − 1 (= min(a − 1, b) in phase Ia) and (a − 1)/b, with
    their 95% bootstrap intervals and the prediction's position in them (:func:`interval_position`), the
    value the verdicts ``chinchilla_alpha`` and ``chinchilla_beta`` judge (module docstring)."""
    ch = measurement.series.get("chinchilla", pd.DataFrame())
    if not len(ch):
        return None
    ch = ch.set_index("param")
    ex = S.exponents(cfg.a, cfg.b)
    out = {}
    for key, pred in (("alpha", ex.model), ("beta", ex.time)):
        fitted, lo, hi = (float(ch.loc[key, c]) for c in ("fitted", "low", "high"))
        out[key] = {"predicted": pred, "fitted": fitted, "interval": (lo, hi),
                    "position": interval_position(pred, fitted, lo, hi)}
    out["form"] = ("additive: F_pp(t) + F_0(N)" if ex.phase.name == "Ia" else
                   f"phase {ex.phase.name}: F_ac ∝ N^-1 t^-(1-1/b) couples N and t (no Chinchilla form)")
    return out


def interval_position(predicted: float, fitted: float, low: float, high: float) -> float:
    """|predicted − fitted| over the interval's half on the prediction's side: ≤ 1 inside the interval."""
    half = (high - fitted) if predicted >= fitted else (fitted - low)
    if not half > 0:
        return float("inf") if predicted != fitted else 0.0
    return abs(predicted - fitted) / half


@register
class ScalingFrontier(Experiment):
    """Verdicts: the compute-optimal loss exponent of one-pass SGD within 5% of its phase's prediction; the
    Chinchilla fitter's α and β (E held at 0) within their bootstrap intervals of a − 1 and (a − 1)/b; the N* and
    t*/N* exponents reported beside their predictions (module docstring)."""

    name = "scaling-frontier"
    law = ("One-pass SGD on power-law random features has a compute-optimal loss L*(C) ∝ C^-x, with x set by the "
           "phase of (a, b): (a − 1)/(1 + b) in phase Ia, (a − 1)/a in II, 1 − 1/(2b) in III.")
    citation = ("Paquette, Paquette, Xiao & Pennington 2024, arXiv 2405.15074; Bordelon, Atanasov & Pehlevan 2024, "
                "arXiv 2402.01092; Hoffmann et al. 2022, arXiv 2203.15556")
    Config = ScalingFrontierConfig

    def default_config(self) -> ScalingFrontierConfig:
        """Phase Ia at (2.5, 3) with more projections and bootstrap replicates."""
        return ScalingFrontierConfig(replicates=256, bootstrap=400)

    def quick_config(self) -> ScalingFrontierConfig:
        return ScalingFrontierConfig()

    def smoke_config(self) -> ScalingFrontierConfig:
        return ScalingFrontierConfig(model_sizes=(4, 8, 16, 32), replicates=4, groups=2, compute_window=(100.0, 2000.0),
                                     max_steps=500, fit_from_size=4, bootstrap=10)

    def phase_two_config(self) -> ScalingFrontierConfig:
        """The full book's phase-II task (a, b) = (6, 4), deep inside its phase (module docstring)."""
        return ScalingFrontierConfig(spectrum_exponent=4.0, target_exponent=6.0, features=2048,
                                     model_sizes=(23, 32, 45, 64, 91, 128, 181, 256), replicates=512, groups=32,
                                     compute_window=(1e5, 3e6), max_steps=60_000, fit_from_size=16, bootstrap=60,
                                     stop_after=2.0)

    def phase_three_config(self) -> ScalingFrontierConfig:
        """The full book's phase-III task (a, b) = (9, 3), where the deterministic equivalent's frontier is within
        1.4% of x at C = 10⁵-10⁶ (module docstring)."""
        return ScalingFrontierConfig(spectrum_exponent=3.0, target_exponent=9.0, features=2048,
                                     model_sizes=(128, 181, 256, 362, 512, 724, 1024), replicates=256, groups=32,
                                     compute_window=(7e4, 1e6), max_steps=8000, fit_from_size=128, bootstrap=60)

    def lawbook(self, quick: bool = True) -> list[tuple[str, ScalingFrontierConfig]]:
        if quick:
            return [("phase Ia", self.quick_config())]
        return [("phase Ia", self.default_config()), ("phase II", self.phase_two_config()),
                ("phase III", self.phase_three_config())]

    def criteria(self) -> list[Criterion]:
        return [
            Criterion("frontier_exponent", "|fitted / predicted − 1| of the compute-optimal loss exponent x "
                      "(L* ∝ C^-x, C = N·t·B)", FRONTIER_TOL,
                      "the issue's 5%; the theory's own expected frontier (deterministic equivalent) is within 4% of "
                      "x over the window (checked, as is the cut-off M, else inconclusive); seeds 0-2: phase Ia "
                      "(quick) 1.2%, 2.4%, 1.6% (DE −0.1%); phase II (full, 512 projections) 3.4%, 4.0%, 4.6% "
                      "(DE +2.5%: thin); phase III (full) 0.4%, 3.0%, 1.0% (DE +1.5%)"),
            Criterion("chinchilla_alpha", "position of the predicted a − 1 in the Chinchilla fit's 95% bootstrap "
                      "interval of α (0: at the fit, 1: at the interval's end)", CHINCHILLA_TOL,
                      "the issue's 'within its bootstrap intervals' (95%); seeds 0-2: 0.21, 0.58, 0.83",
                      when=IA_ONLY, applies=_in_phase_ia),
            Criterion("chinchilla_beta", "position of the predicted (a − 1)/b in the Chinchilla fit's 95% bootstrap "
                      "interval of β (0: at the fit, 1: at the interval's end)", CHINCHILLA_TOL,
                      "the issue's 'within its bootstrap intervals' (95%); seeds 0-2: 0.55, 0.50, 0.96",
                      when=IA_ONLY, applies=_in_phase_ia),
        ]

    def counterexamples(self) -> list[Counterexample]:
        return [
            Counterexample("loss steeper by 10% of x in C", ("frontier_exponent",), perturb=_steeper_frontier,
                           why="every grid loss multiplied by (N·t)^(−0.1x): the frontier's exponent is 10% steeper, "
                               "twice the tolerance"),
            Counterexample("clocks tilted: the grid read at N^1.5 and t^1.25", ("chinchilla_alpha", "chinchilla_beta"),
                           perturb=_tilted_clocks,
                           why="the same losses at model sizes N^1.5 and steps t^1.25 follow A/N^(α/1.5) + "
                               "B/t^(β/1.25): a grid of exponents 1.0 and 0.4 where 1.5 and 0.5 are predicted, "
                               "outside the fit's intervals (a third and a fifth off; the intervals' halves are "
                               "≤ 0.6α and ≤ 0.15β at seeds 0-2)"),
            Counterexample("on the Ia/II boundary", ("frontier_exponent",), expect="inconclusive",
                           config=ScalingFrontierConfig(target_exponent=3.0, spectrum_exponent=2.0, model_sizes=(4, 8, 16, 32), replicates=2, groups=2,
                                                        chains=1, compute_window=(100.0, 2000.0), bootstrap=10),
                           why="a − 1 = b = 2: the phases' terms share an exponent and logarithms appear; the task is "
                               "flagged, not judged"),
        ]

    def predict(self, config: ScalingFrontierConfig) -> Result:
        return predict_frontier(config)

    def measure(self, config: ScalingFrontierConfig, progress: Progress | None = None) -> Result:
        return measure_frontier(config, progress)

    def verdict(self, config: ScalingFrontierConfig, prediction: Result, measurement: Result):
        ex = S.exponents(config.a, config.b)
        quantities = {c.key: c.quantity for c in self.criteria()}
        judged = {c.key for c in self.criteria_for(config)}
        if measurement.diverged_at is not None or "fits" not in measurement.series:
            return [self.make_verdict(key, quantities[key], pred, float("nan"), float("nan"),
                                      inconclusive="the run diverged")
                    for key, pred in (("frontier_exponent", ex.compute_loss), ("chinchilla_alpha", ex.model),
                                      ("chinchilla_beta", ex.time)) if key in judged]
        fits = measurement.series["fits"].set_index("quantity")
        volterra = measurement.series["fits_volterra"].set_index("quantity")
        x = float(fits.loc["loss", "measured"])
        reported = {f"{k}_exponent": {"predicted": p, "measured": float(fits.loc[q, "measured"]),
                                      "interval": (float(fits.loc[q, "low"]), float(fits.loc[q, "high"])),
                                      "volterra": float(volterra.loc[q, "measured"])}
                    for k, q, p in (("model_size", "model_size", ex.compute_model),
                                    ("tokens_per_parameter", "ratio", ex.compute_ratio))}
        out = [self.make_verdict(
            "frontier_exponent", quantities["frontier_exponent"], ex.compute_loss, x, abs(x / ex.compute_loss - 1),
            inconclusive=frontier_precondition(config, measurement, prediction), phase=ex.phase.name,
            interval=(float(fits.loc["loss", "low"]), float(fits.loc["loss", "high"])),
            window=(float(fits.loc["loss", "first"]), float(fits.loc["loss", "last"])),
            volterra=float(volterra.loc["loss", "measured"]), x_se=_x_se(measurement),
            deterministic_equivalent=prediction.summary.get("de_loss_exponent"), **reported,
            chinchilla=chinchilla_report(config, measurement))]
        report = chinchilla_report(config, measurement)
        why_not = chinchilla_precondition(config, measurement)
        for key in ("alpha", "beta"):
            if f"chinchilla_{key}" not in judged:
                continue
            r = report[key] if report is not None else None
            out.append(self.make_verdict(
                f"chinchilla_{key}", quantities[f"chinchilla_{key}"], r["predicted"] if r else float("nan"),
                r["fitted"] if r else float("nan"), r["position"] if r else float("nan"), inconclusive=why_not,
                phase=ex.phase.name, interval=r["interval"] if r else None, held_E=0.0))
        return out

    def figures(self, config: ScalingFrontierConfig, prediction: Result, measurement: Result, outdir: Path):
        from matplotlib.ticker import NullFormatter

        from lmech.report import plotting as P

        fig, axes = P.panels(4, ncols=2, size=(4.8, 3.7))
        ex = S.exponents(config.a, config.b)
        grid = measurement.series.get("grid")
        frontier = measurement.series.get("frontier")
        ax = axes[0]
        if grid is not None and frontier is not None and len(frontier):
            budgets = np.geomspace(*config.compute_window, 5)
            for color, c in zip(P.colors(len(budgets)), budgets):
                xs, ys = [], []
                for n, part in grid[grid.step > 0].groupby("model_size"):
                    t = c / (n * config.batch)
                    if part.step.min() <= t <= part.step.max():
                        xs.append(n)
                        ys.append(math.exp(np.interp(math.log(t), np.log(part.step), np.log(part["loss"]))))
                ax.plot(xs, ys, "o-", color=color, markersize=3, linewidth=1, label=f"C = {c:.2g}")
            ok = frontier[frontier.bracketed]
            ax.plot(ok.model_size, ok.loss, color="k", linewidth=1.5, label="measured frontier")
            n0, l0 = float(ok.model_size.iloc[0]), float(ok.loss.iloc[0])
            ns = np.array([n0, float(ok.model_size.max())])
            # along the frontier L* ∝ N*^(−x/y)
            ax.plot(ns, l0 * (ns / n0) ** (-ex.compute_loss / ex.compute_model), color="C3", linewidth=2, alpha=0.6,
                    label=f"predicted L* ∝ N*^-{ex.compute_loss / ex.compute_model:.3g}")
        ax.set(xscale="log", yscale="log", xlabel="model size N", ylabel="population loss at N·t·B = C",
               title="iso-compute curves (one-pass SGD)")
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.legend(fontsize=7, frameon=False)
        fits = measurement.series.get("fits")
        for ax, key, label, pred in ((axes[1], "loss", "L*(C)", -ex.compute_loss),
                                     (axes[2], "model_size", "N*(C) and t*/N*", ex.compute_model)):
            if frontier is None or not len(frontier):
                continue
            ok = frontier[frontier.bracketed]
            exact = measurement.series["frontier_volterra"]
            exact = exact[exact.bracketed]
            ax.plot(ok.compute, ok[key], "o", color="C0", markersize=4, label=f"measured {key.replace('_', ' ')}")
            ax.plot(exact.compute, exact[key], **P.THEORY, label="Volterra (same draws)")
            c0, v0 = float(ok.compute.iloc[0]), float(ok[key].iloc[0])
            cs = np.array([c0, float(ok.compute.max())])
            ax.plot(cs, v0 * (cs / c0) ** pred, color="C3", linewidth=2, alpha=0.6, label=f"slope {pred:+.3g} (phase)")
            if key == "model_size":
                ax.plot(ok.compute, ok.ratio, "s", color="C2", markersize=4, label="t*/N* measured")
                r0 = float(ok.ratio.iloc[0])
                ax.plot(cs, r0 * (cs / c0) ** ex.compute_ratio, color="C2", linewidth=2, alpha=0.5,
                        label=f"t*/N* slope {ex.compute_ratio:+.3g}")
            if fits is not None and len(fits):
                row = fits.set_index("quantity").loc[key]
                ax.set_title(f"{label}: fitted {row['measured']:.3g} [{row['low']:.3g}, {row['high']:.3g}]", fontsize=9)
            ax.axvspan(*config.compute_window, color="grey", alpha=0.08)
            ax.set(xscale="log", yscale="log", xlabel="compute C = N·t·B")
            ax.legend(fontsize=7, frameon=False)
        draw_phase_diagram(axes[3], config)
        report = chinchilla_report(config, measurement) if "fits" in measurement.series else None
        if report is not None:
            text = "\n".join(f"Chinchilla {k}: {r['fitted']:.3g} [{r['interval'][0]:.3g}, {r['interval'][1]:.3g}], "
                              f"predicted {r['predicted']:.3g}" for k, r in report.items() if k != "form")
            axes[3].text(0.03, 0.97, text, transform=axes[3].transAxes, fontsize=7, va="top")
        return [P.save(fig, outdir / "scaling-frontier.png")]


# ================================================================================ counterexamples

def _perturbed(config, measurement: Result, factor) -> Result:
    frames = {}
    for name in ("grid", "groups"):
        frame = measurement.series[name].copy()
        frame["loss"] = frame["loss"] * factor(frame["model_size"].to_numpy(float),
                                               np.maximum(frame["step"].to_numpy(float), 1))
        frames[name] = frame
    series = frames | analyse(config, frames["grid"], frames["groups"])
    return Result(series=series, summary=dict(measurement.summary), arrays=dict(measurement.arrays))


def _steeper_frontier(config, prediction, measurement):
    x = S.exponents(config.a, config.b).compute_loss
    return _perturbed(config, measurement, lambda n, t: (n * t * config.batch) ** (-0.1 * x))



def _tilted_clocks(config, prediction, measurement):
    """The Chinchilla fit's points read at model sizes N^TILT_N and steps t^TILT_T (the same points as the
    law's fit: selected before the tilt)."""
    import dataclasses

    g = measurement.series["groups"]
    g = g[(g.step >= config.fit_from_step) & (g.model_size >= config.fit_from_size)].copy()
    g["model_size"] = g.model_size.astype(float) ** TILT_N
    g["step"] = g.step.astype(float) ** TILT_T
    loose = dataclasses.replace(config, fit_from_step=1, fit_from_size=1)
    series = dict(measurement.series) | {"chinchilla": _chinchilla_table(chinchilla_fit(loose, g))}
    return Result(series=series, summary=dict(measurement.summary), arrays=dict(measurement.arrays))
