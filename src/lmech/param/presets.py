r"""Width and depth parametrizations as tables: SP, NTK, μP (TP V Tables 3 and 8), mean-field, Depth-μP, CompleteP.

A parametrization says how a parameter's init, forward multiplier, learning rate, weight decay and
Adam ε change as the network is made wider (and deeper) than a **base** model at which every
hyperparameter was tuned. Each quantity is a monomial in the parameter's width multipliers
:math:`n_{in} = \text{fan\_in}/\text{fan\_in}_{base}` and :math:`n_{out} = \text{fan\_out}/\text{fan\_out}_{base}`
(1 along a dimension that does not grow with width), times a power of the depth multiplier
:math:`m_L = L/L_{base}` for the parameters inside residual branches. At the base shape every
monomial is 1, so every preset equals the model as built (bit for bit) there; the tables below
give the exponents. Notation follows Yang et al. 2022, *Tensor Programs V* (TP V, arXiv 2203.03466):
a weight ``W`` is used in the forward pass as :math:`A\,W` (``A`` the multiplier), drawn with variance
:math:`B^2`, and trained with learning rate :math:`\eta\,C`.

Roles: ``input`` (fan-in finite, fan-out grows: the first layer), ``hidden`` (both grow),
``output`` (fan-in grows, fan-out finite: the readout), ``bias``, ``norm`` (a normalization gain),
``embedding`` (an ``nn.Embedding`` table: an input weight), ``query``/``key`` (attention projections:
hidden weights), and ``fixed`` (no dimension grows: every scale 1).

**Init** is expressed relative to the standard (PyTorch) init the model is built with: weights with
variance :math:`\propto 1/\text{fan\_in}`, biases with variance :math:`\propto 1/\text{fan\_in}` of
their layer, embeddings and norm gains constant. ``parametrize`` multiplies each parameter by
:math:`\sqrt{\text{table variance}\,/\,\text{SP variance}}` (mup's ``set_base_shapes`` convention).

μP, Table 8 form (``"mup"``; TP V Table 8, the form ``mup`` implements; also CompleteP Table 1, μP column):

=================  =====================  ===================  ==================
                   input weights, biases  output weights       hidden weights
=================  =====================  ===================  ==================
init variance      1/fan_in               1                    1/fan_in
multiplier A       1                      1/fan_in             1
SGD lr C           fan_out                fan_in               1
Adam lr C          1                      1                    1/fan_in
=================  =====================  ===================  ==================

μP, Table 3 form (``"mup-table3"``; TP V Table 3): as Table 8 except the output weights, whose
multiplier is moved into the init and the learning rate: init variance 1/fan_in², multiplier 1,
SGD lr 1/fan_in, Adam lr 1/fan_in. The two forms are one parametrization: TP V Lemma J.1 (the
abc-symmetry) says that :math:`(A, B, C) \to (A\theta, B/\theta, C/\theta^2)` for SGD and
:math:`(A\theta, B/\theta, C/\theta)` for Adam leaves the function and its whole training trajectory
unchanged; θ = fan_in on the readout maps Table 8 onto Table 3 (a test trains both and compares).

Mean-field (``"mean-field"``): μP with the hidden weights O(1)-initialized, Lemma J.1 with
:math:`\theta = \text{fan\_in}^{-1/2}` on them: init variance 1, multiplier :math:`\text{fan\_in}^{-1/2}`,
SGD lr fan_in, Adam lr :math:`\text{fan\_in}^{-1/2}`; input and output as in Table 8. For one hidden layer
this is the mean-field network of Mei, Montanari & Nguyen 2018 (arXiv 1804.06561, eq. 1:
:math:`f = \frac1N\sum_i a_i\,\sigma(w_i\cdot x)` with O(1) parameters and SGD steps ∝ N), which TP IV
(Yang & Hu 2021, arXiv 2011.14522, §5) identifies with μP; it trains exactly as μP does.

NTK (``"ntk"``; Jacot et al. 2018, arXiv 1806.07572, eq. 1): every weight O(1)-initialized with
multiplier :math:`\text{fan\_in}^{-1/2}`, biases unscaled, SGD learning rate 1 for every parameter.
Adam (derived here, not published as a table): the learning rates that keep NTK's scales, features
moving by :math:`\Theta(n^{-1/2})` and the output by Θ(1) per step with Adam's Θ(1) entrywise updates:
input :math:`\text{fan\_out}^{-1/2}`, hidden :math:`(\text{fan\_in}\,\text{fan\_out})^{-1/2}`, output
:math:`\text{fan\_in}^{-1/2}`, biases and norm gains :math:`\text{fan\_out}^{-1/2}`.

SP (``"sp"``): the model as built, every scale 1 (TP V Table 3, grey entries; lmech keeps the
model's own bias init where TP V writes variance 1).

Depth: Depth-μP (``"depth-mup"``, α = ½; Yang et al. 2023, *Tensor Programs VI*, arXiv 2310.02244)
and CompleteP (``"completep"``, α = 1; Dey et al. 2025, arXiv 2505.01618, Table 1) are μP (Table 8)
plus, for every parameter inside a residual branch (``x + m_L^{-α} F(x)``), Dey et al. Table 1:

======================================  ===================================================
residual branch multiplier              :math:`m_L^{-\alpha}`
hidden weight / bias / pre-LN Adam lr   × :math:`m_L^{\alpha-1}`
hidden weight decay (AdamW)             × :math:`m_N` (as μP; :math:`m_N` the width multiplier)
AdamW ε (residual blocks)               × :math:`m_L^{-\alpha}` (times the width rule below)
======================================  ===================================================

and for SGD (derived, the same desideratum: each of L branches moves the residual stream by
Θ(1/L)): lr × :math:`m_L^{2\alpha-1}` (constant at α = ½, as TP VI states for Depth-μP with SGD).

Adam ε (``scale_eps``): ε is added to :math:`\sqrt{\hat v}`, the size of the parameter's gradient
entries, so it transfers across widths only if it scales like them (Everett et al. 2024, arXiv
2407.05872, §4.3: an unscaled ε swamps the gradients of wide layers and freezes them). Each column
carries the exponent of its gradient entries at init, measured by ``tests/param/test_eps_scaling.py``
(log-log slope in width, widths 64…1024). In μP every hidden representation :math:`h` has
:math:`\partial L/\partial h = \Theta(1/n)` (the readout's effective weights are :math:`\Theta(1/n)`), so
the gradient of a weight used as :math:`A\,W` is :math:`A\,(\partial L/\partial h)\otimes x`:

============================  =====================  =========================  ================  ============
ε scale                       input W, biases, norm  hidden W                   output W          readout bias
                              gains, embeddings
============================  =====================  =========================  ================  ============
μP Table 8 (readout A=1/n)    1/fan_out              1/fan_in                   1/fan_in          1
μP Table 3 (readout A=1)      1/fan_out              1/fan_in                   1                 1
mean-field (hidden A=n^-½)    1/fan_out              fan_in^-3/2                1/fan_in          1
NTK                           fan_out^-½             (fan_in·fan_out)^-½        fan_in^-½         1
============================  =====================  =========================  ================  ============

(a bias or norm gain reads the input column with its own length as fan_out, so the readout's bias,
whose gradient :math:`\partial L/\partial f` is Θ(1), keeps ε). The forms agree with the abc-symmetry
(TP V Lemma J.1): :math:`(A, B) \to (A\theta, B/\theta)` multiplies the stored weight's gradient by θ, so
Adam's trajectory is unchanged only with :math:`\epsilon \to \epsilon\theta` besides :math:`C \to C/\theta`
(θ = fan_in turns the Table 8 readout's ε scale 1/fan_in into Table 3's 1). In a residual branch the gradient carries the branch multiplier too:
ε × :math:`m_L^{-\alpha}` (Dey et al. 2025, Table 1 and their eq. 40). lmech first read Dey et al.'s
Table 1 (the authors' image in EleutherAI/nanoGPT-mup, branch ``completep``) as leaving the embedding,
final norm and unembedding ε unscaled; the authors' reference code has since been corrected to scale
those by :math:`m_N^{-1}` as well (its "emb. & unemb." ε = ε/m_N, citing their eq. 40, under μP and
CompleteP alike), which is the rule above for a Table-8 (or tied) unembedding. The symmetry leaves
the product :math:`C\,\epsilon` of each parameter unchanged (and :math:`C\lambda`, decoupled decay), so no
form of μP needs fewer Adam parameter groups than there are distinct :math:`(C\epsilon, C\lambda)`:
three for an MLP with a readout bias (input-like weights and biases with the Table 8 readout weight;
hidden weights; the readout bias), two without one. mup's ``MuAdam`` does not
scale ε at all (every group keeps the user's ε).
SP keeps ε as given (the model as built).

Weight decay: torch's SGD, Adam and AdamW all shrink a weight by :math:`\eta\lambda` per step, so
its memory (EMA) timescale is :math:`1/(\eta\lambda)` steps (Wang & Aitchison 2025, arXiv 2405.13698).
μP-family presets keep that timescale width-independent: a parameter whose lr scale has width part
:math:`s` gets weight decay scale :math:`1/s` (Dey et al. Table 1: hidden WD :math:`\lambda\,m_N`;
mup's ``MuAdam``/``MuSGD`` with coupled decay). SP and NTK leave λ alone.

Attention: the logits :math:`q\cdot k` are scaled by :math:`1/\sqrt{d}` in SP/NTK and by
:math:`1/d` in the μP family (TP V §4 / Appendix B), written relative to the base head
dimension as :math:`d_{base}^{-1/2}\,(d/d_{base})^{-1}`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from lmech.errors import BadInput

__all__ = ["ROLES", "COLUMNS", "Monomial", "Column", "Preset", "PRESETS", "get_preset"]

#: Parameter roles a table row can carry.
ROLES = ("input", "hidden", "output", "bias", "norm", "embedding", "query", "key", "fixed")

#: Which table column a role reads: TP V groups input weights with all biases (and norm gains,
#: embeddings: vector-like parameters whose fan-in is finite).
COLUMNS = {"input": "input", "embedding": "input", "bias": "input", "norm": "input",
           "hidden": "hidden", "query": "hidden", "key": "hidden", "output": "output", "fixed": "fixed"}

@dataclass(frozen=True)
class Monomial:
    """fan_in_mult^a · fan_out_mult^b (a, b may be fractional)."""

    a: float = 0.0
    b: float = 0.0

    def __call__(self, fan_in_mult: float, fan_out_mult: float) -> float:
        out = 1.0
        if self.a:
            out *= fan_in_mult**self.a
        if self.b:
            out *= fan_out_mult**self.b
        return out


ONE = Monomial()


@dataclass(frozen=True)
class Column:
    """One column of a parametrization table (see the module docstring); ``eps``: Adam ε's scale."""

    init_var: Monomial = ONE
    multiplier: Monomial = ONE
    lr_sgd: Monomial = ONE
    lr_adam: Monomial = ONE
    eps: Monomial = ONE


@dataclass(frozen=True)
class Preset:
    """A named parametrization: one :class:`Column` per kind of parameter, plus depth and attention rules.

    ``alpha`` is the residual-branch exponent (branch multiplier :math:`m_L^{-\\alpha}`; 0 = no depth
    rule); ``attention`` the exponent of the head dimension in the attention scale (−½ or −1);
    ``decay_timescale``: weight decay scaled by the inverse of the width part of the lr scale;
    ``scale_eps``: Adam ε scaled by the column's ``eps`` monomial (the gradient entries' scale) and, in
    residual branches, by :math:`m_L^{-\alpha}`; ``zero_query_readout``: reference models
    zero-initialize the attention query and the readout (TP V §D.2 recommends it under μP);
    ``identity_init``: leave every parameter's init as built (SP).
    """

    name: str
    input: Column
    hidden: Column
    output: Column
    alpha: float = 0.0
    attention: float = -0.5
    decay_timescale: bool = False
    scale_eps: bool = False
    zero_query_readout: bool = False
    identity_init: bool = False
    reference: str = ""
    aliases: tuple[str, ...] = field(default=())

    def column(self, role: str) -> Column:
        col = COLUMNS[role]
        return Column() if col == "fixed" else getattr(self, col)

    def branch_multiplier(self, depth_mult: float) -> float:
        """:math:`m_L^{-\\alpha}` (1 when the preset has no depth rule)."""
        return 1.0 if not self.alpha or depth_mult == 1 else float(depth_mult) ** (-self.alpha)

    def attention_scale(self, head_dim: int, base_head_dim: int) -> float:
        """The factor of the attention logits q·k: 1/√d (SP, NTK) or √d_base/d (μP family)."""
        ratio = head_dim / base_head_dim
        scale = base_head_dim**-0.5
        return scale if ratio == 1 else scale * ratio**self.attention


_TABLE8_INPUT = Column(init_var=Monomial(a=-1), lr_sgd=Monomial(b=1), eps=Monomial(b=-1))
_TABLE8_HIDDEN = Column(init_var=Monomial(a=-1), lr_adam=Monomial(a=-1), eps=Monomial(a=-1))
_TABLE8_OUTPUT = Column(multiplier=Monomial(a=-1), lr_sgd=Monomial(a=1), eps=Monomial(a=-1))
_MUP = dict(attention=-1.0, decay_timescale=True, scale_eps=True, zero_query_readout=True)

PRESETS: dict[str, Preset] = {}


def _add(preset: Preset) -> None:
    for key in (preset.name, *preset.aliases):
        PRESETS[key] = preset


_add(Preset("sp", Column(init_var=Monomial(a=-1)), Column(init_var=Monomial(a=-1)), Column(init_var=Monomial(a=-1)),
            identity_init=True, reference="TP V Table 3 (grey); PyTorch defaults", aliases=("standard",)))
_add(Preset("ntk",
            Column(multiplier=ONE, lr_adam=Monomial(b=-0.5), eps=Monomial(b=-0.5)),
            Column(multiplier=Monomial(a=-0.5), lr_adam=Monomial(a=-0.5, b=-0.5), eps=Monomial(a=-0.5, b=-0.5)),
            Column(multiplier=Monomial(a=-0.5), lr_adam=Monomial(a=-0.5), eps=Monomial(a=-0.5)), scale_eps=True,
            reference="Jacot et al. 2018, arXiv 1806.07572, eq. 1 (Adam column derived)"))
_add(Preset("mup", _TABLE8_INPUT, _TABLE8_HIDDEN, _TABLE8_OUTPUT, **_MUP,
            reference="Yang et al. 2022, TP V (arXiv 2203.03466) Table 8", aliases=("mup-table8", "μp")))
_add(Preset("mup-table3", _TABLE8_INPUT, _TABLE8_HIDDEN,
            Column(init_var=Monomial(a=-2), lr_sgd=Monomial(a=-1), lr_adam=Monomial(a=-1)), **_MUP,
            reference="Yang et al. 2022, TP V (arXiv 2203.03466) Table 3"))
_add(Preset("mean-field", _TABLE8_INPUT,
            Column(multiplier=Monomial(a=-0.5), lr_sgd=Monomial(a=1), lr_adam=Monomial(a=-0.5), eps=Monomial(a=-1.5)),
            _TABLE8_OUTPUT, **_MUP,
            reference="Mei, Montanari & Nguyen 2018 (arXiv 1804.06561) eq. 1; TP IV (arXiv 2011.14522) §5",
            aliases=("mf",)))
_add(Preset("depth-mup", _TABLE8_INPUT, _TABLE8_HIDDEN, _TABLE8_OUTPUT, alpha=0.5, **_MUP,
            reference="Yang et al. 2023, TP VI (arXiv 2310.02244); Dey et al. 2025 Table 1, α = 1/2"))
_add(Preset("completep", _TABLE8_INPUT, _TABLE8_HIDDEN, _TABLE8_OUTPUT, alpha=1.0, **_MUP,
            reference="Dey et al. 2025, CompleteP (arXiv 2505.01618) Table 1, α = 1"))

#: The preset names (without aliases), in documentation order.
NAMES = ("sp", "ntk", "mup", "mup-table3", "mean-field", "depth-mup", "completep")


def get_preset(preset: str | Preset) -> Preset:
    """The :class:`Preset` named ``preset`` (names and aliases of :data:`PRESETS`)."""
    if isinstance(preset, Preset):
        return preset
    if not isinstance(preset, str) or preset.lower() not in PRESETS:
        raise BadInput("parametrization", preset, f"one of {', '.join(NAMES)} (or a Preset)")
    return PRESETS[preset.lower()]
