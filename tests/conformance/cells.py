"""The conformance matrix: training setups Keras supports, generated from Keras itself.

Every axis is enumerated from Keras's own namespaces (``keras.optimizers``,
``keras.optimizers.schedules``, ``keras.losses``, ``keras.metrics``,
``keras.regularizers``), so a class a new Keras release adds becomes a cell by
itself. What a class needs to be built (a head whose targets it understands,
constructor arguments) is the only hand-kept knowledge, in the tables below; a
class missing from them gets the defaults and is tested all the same.

Each cell builds a small compiled model, trains it one step, exports it and
compares every MetaGraph with Keras as the oracle (``tests/conformance/test_matrix.py``).
Expected outcomes live here too (``REFUSED``), and the README's "Which models
export" table is generated from them (``python -m tests.conformance.cells``), which a
test checks: the table cannot claim what the matrix does not show.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import keras
import numpy as np

BATCH = 6
SEED_DATA = 3

# ---------------------------------------------------------------- heads and data

REGRESSION, BINARY, CATEGORICAL, SPARSE = "regression", "binary", "categorical", "sparse"
SEQUENCE, EMBEDDING = "sequence", "embedding"  # CTC's per-step logits; Circle's embeddings
HEAD_UNITS = {REGRESSION: 2, BINARY: 1, CATEGORICAL: 3, SPARSE: 3, SEQUENCE: 4, EMBEDDING: 4}
HEAD_ACTIVATION = {
    REGRESSION: None,
    BINARY: "sigmoid",
    CATEGORICAL: "softmax",
    SPARSE: "softmax",
    SEQUENCE: None,
    EMBEDDING: None,
}
TIME_STEPS = 5


def targets(head: str, n: int, rng: np.random.Generator) -> np.ndarray:
    """Targets a loss or metric of ``head`` accepts."""
    if head == BINARY:
        return rng.integers(0, 2, (n, 1)).astype("float32")
    if head == CATEGORICAL:
        return np.eye(3, dtype="float32")[rng.integers(0, 3, n)]
    if head in (SPARSE, EMBEDDING):
        return rng.integers(0, 3, (n,)).astype("int32")
    if head == SEQUENCE:  # label ids 1..3 (0 is CTC's blank), padded with 0
        labels = rng.integers(1, HEAD_UNITS[SEQUENCE], (n, 3))
        labels[:, 2] *= rng.integers(0, 2, n)
        return labels.astype("int32")
    return rng.uniform(0.1, 1.0, (n, 2)).astype("float32")


# ---------------------------------------------------------------- input structures

SINGLE, LIST, DICT, NESTED = "single", "list", "dict", "nested"
FUNCTIONAL, SEQUENTIAL, SUBCLASSED = "functional", "sequential", "subclassed"
OWN_COMPILE = "subclassed, own compile()"
STRUCTURES = (SINGLE, LIST, DICT, NESTED)
KINDS = (FUNCTIONAL, SEQUENTIAL, SUBCLASSED)


def input_shapes(structure: str, head: str = REGRESSION) -> Any:
    """Per-example shapes, in the structure the model is called with."""
    if head == SEQUENCE:
        return (TIME_STEPS, 3)
    return {
        SINGLE: (3,),
        LIST: [(2,), (3,)],
        DICT: {"age": (1,), "income": (2,)},
        NESTED: {"user": [(1,), (2,)], "item": (2,)},
    }[structure]


def inputs_batch(structure: str, n: int, rng: np.random.Generator, head: str = REGRESSION) -> Any:
    return keras.tree.map_shape_structure(
        lambda shape: rng.standard_normal((n, *shape)).astype("float32"),
        input_shapes(structure, head),
    )


def keras_inputs(structure: str, head: str = REGRESSION) -> Any:
    counter = iter(range(100))

    def make(shape):
        return keras.Input(shape, name=f"in{next(counter)}")

    shapes = input_shapes(structure, head)
    if isinstance(shapes, dict):  # a dict's inputs are named by their keys, as Keras asks
        return {
            k: keras.Input(s, name=k)
            if isinstance(s, tuple)
            else keras.tree.map_shape_structure(make, s)
            for k, s in shapes.items()
        }
    return keras.tree.map_shape_structure(make, shapes)


def input_names(spec: Spec) -> list[str]:
    """The serving signature's input names, in ``keras.tree.flatten`` order.

    Functional: the Input layers' names. Sequential: its Input's. Subclassed: the
    ``call`` argument's name for one tensor, else the path of each tensor in the
    structure (dict keys, list positions) joined by ``_``.
    """
    if spec.kind == SEQUENTIAL:
        return ["features"]
    if spec.kind == FUNCTIONAL:
        return [t.name for t in keras.tree.flatten(keras_inputs(spec.structure, spec.head))]
    return {
        SINGLE: ["inputs"],
        LIST: ["inputs_0", "inputs_1"],
        DICT: ["age", "income"],
        NESTED: ["item", "user_0", "user_1"],
    }[spec.structure]


@keras.saving.register_keras_serializable(package="conformance")
class Tower(keras.Model):
    """A subclassed model on any input structure: flatten, concatenate, two layers."""

    def __init__(self, units: int = 2, activation: Any = None, hidden: dict | None = None, **kw):
        super().__init__(**kw)
        self.units, self.activation, self.hidden_options = units, activation, hidden or {}
        self.hidden = keras.layers.Dense(4, activation="tanh", **self.hidden_options)
        self.head = keras.layers.Dense(units, activation=activation, dtype=_head_dtype())

    def call(self, inputs, training=False):
        flat = keras.tree.flatten(inputs)
        joined = flat[0] if len(flat) == 1 else keras.ops.concatenate(flat, axis=-1)
        return self.head(self.hidden(joined))

    def get_config(self):
        return {
            **super().get_config(),
            "units": self.units,
            "activation": self.activation,
            "hidden": keras.saving.serialize_keras_object(self.hidden_options),
        }

    @classmethod
    def from_config(cls, config):
        config["hidden"] = keras.saving.deserialize_keras_object(config.get("hidden"))
        return cls(**config)


@keras.saving.register_keras_serializable(package="conformance")
class OwnCompileTower(Tower):
    """A subclass with its own compile(), as GAN-style models have, and no
    compile_from_config()."""

    def compile(self, optimizer=None, loss=None, **kwargs):
        super().compile(optimizer=optimizer, loss=loss, **kwargs)


def _head_dtype() -> str | None:
    """Mixed-precision models keep their outputs in float32, as Keras's guide says."""
    return "float32" if keras.config.dtype_policy().name.startswith("mixed") else None


@keras.saving.register_keras_serializable(package="conformance")
class AddsLoss(keras.layers.Layer):
    """A layer that adds its own loss (``add_loss``) on every call."""

    def call(self, inputs):
        self.add_loss(0.01 * keras.ops.mean(keras.ops.square(inputs)))
        return inputs


@keras.saving.register_keras_serializable(package="conformance")
class MaxAbsError(keras.metrics.Metric):
    """A stateful custom metric: the largest absolute error seen so far."""

    def __init__(self, name: str = "max_abs_error", **kwargs):
        super().__init__(name=name, **kwargs)
        self.largest = self.add_variable((), initializer="zeros", name="largest")

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_true = keras.ops.cast(y_true, self.dtype)
        error = keras.ops.max(keras.ops.abs(y_true - keras.ops.cast(y_pred, self.dtype)))
        self.largest.assign(keras.ops.maximum(self.largest, error))

    def result(self):
        return self.largest

    def reset_state(self):
        self.largest.assign(0.0)


# ---------------------------------------------------------------- one setup


@dataclass
class Spec:
    """What a cell's model is: everything has a default, a cell changes one thing."""

    kind: str = FUNCTIONAL
    structure: str = SINGLE
    head: str = REGRESSION
    optimizer: Callable[[], Any] = lambda: keras.optimizers.Adam(0.01)
    loss: Any = None  # default: the head's usual loss
    metrics: Callable[[], list] = lambda: ["mae"]
    hidden: dict = field(default_factory=dict)  # Dense options: regularizers
    adds_loss: bool = False
    policy: str = "float32"
    reset_policy: bool = False  # export after setting the global policy back to float32
    outputs: str = SINGLE  # or LIST, DICT: a regression and a binary head
    extra: Callable[[], list] = lambda: []  # layers between the hidden layer and the head
    compile_options: dict = field(default_factory=dict)

    def default_loss(self) -> Any:
        if self.outputs == LIST:
            return ["mse", "binary_crossentropy"]
        if self.outputs == DICT:
            return {"score": "mse", "label": "binary_crossentropy"}
        return {
            REGRESSION: "mse",
            BINARY: "binary_crossentropy",
            CATEGORICAL: "categorical_crossentropy",
            SPARSE: "sparse_categorical_crossentropy",
        }[self.head]


@dataclass
class Setup:
    """A compiled model that has trained one step, and the batch the cell checks on."""

    model: keras.Model
    x: Any
    y: Any
    policy: str


def build(spec: Spec) -> Setup:
    rng = np.random.default_rng(SEED_DATA)
    keras.config.set_dtype_policy(spec.policy)
    try:
        model = _model(spec)
        loss = spec.loss() if callable(spec.loss) else (spec.loss or spec.default_loss())
        model.compile(
            optimizer=spec.optimizer(), loss=loss, metrics=spec.metrics(), **spec.compile_options
        )
        x0, y0 = inputs_batch(spec.structure, BATCH, rng, spec.head), outputs_targets(spec, rng)
        if spec.kind in (SUBCLASSED, OWN_COMPILE):
            model(x0)  # a subclassed model is built by its first call
        model.train_on_batch(x0, y0)  # optimizer state that is not the initial one
        x, y = inputs_batch(spec.structure, BATCH, rng, spec.head), outputs_targets(spec, rng)
    finally:
        if spec.reset_policy:
            keras.config.set_dtype_policy("float32")
    return Setup(model, x, y, spec.policy)


def outputs_targets(spec: Spec, rng: np.random.Generator) -> Any:
    """Targets in the structure of the model's outputs."""
    if spec.outputs == LIST:
        return [targets(REGRESSION, BATCH, rng), targets(BINARY, BATCH, rng)]
    if spec.outputs == DICT:
        return {"label": targets(BINARY, BATCH, rng), "score": targets(REGRESSION, BATCH, rng)}
    return targets(spec.head, BATCH, rng)


def output_names(spec: Spec) -> list[str]:
    """The serving signature's output names, in ``keras.tree.flatten`` order."""
    if spec.outputs == LIST:
        return ["score", "label"]
    if spec.outputs == DICT:
        return ["label", "score"]
    if spec.head == EMBEDDING:
        return ["normalized"]
    return ["output_0"] if spec.kind == SUBCLASSED else ["head"]


def _two_heads(spec: Spec, joined: Any) -> Any:
    hidden = keras.layers.Dense(4, activation="tanh", name="hidden", **spec.hidden)(joined)
    score = keras.layers.Dense(2, name="score")(hidden)
    label = keras.layers.Dense(1, activation="sigmoid", name="label")(hidden)
    return [score, label] if spec.outputs == LIST else {"score": score, "label": label}


def _model(spec: Spec) -> keras.Model:
    units, activation = HEAD_UNITS[spec.head], HEAD_ACTIVATION[spec.head]
    if spec.kind == SUBCLASSED:
        return Tower(units, activation, spec.hidden, name="tower")
    if spec.kind == OWN_COMPILE:
        return OwnCompileTower(units, activation, spec.hidden, name="tower")
    hidden = keras.layers.Dense(4, activation="tanh", name="hidden", **spec.hidden)
    head = keras.layers.Dense(units, activation=activation, name="head", dtype=_head_dtype())
    layers = [hidden, *spec.extra()]
    layers += ([AddsLoss(name="adds_loss")] if spec.adds_loss else []) + [head]
    if spec.head == EMBEDDING:  # Circle compares L2-normalized embeddings
        layers.append(keras.layers.UnitNormalization(name="normalized"))
    if spec.kind == SEQUENTIAL:
        return keras.Sequential([keras.Input(input_shapes(SINGLE), name="features"), *layers])
    inputs = keras_inputs(spec.structure, spec.head)
    flat = keras.tree.flatten(inputs)
    joined = flat[0] if len(flat) == 1 else keras.layers.Concatenate(name="joined")(flat)
    if spec.outputs != SINGLE:
        return keras.Model(inputs, _two_heads(spec, joined), name=f"outputs_{spec.outputs}")
    out = joined
    for layer in layers:
        out = layer(out)
    return keras.Model(inputs, out, name=f"{spec.kind}_{spec.structure}")


# ---------------------------------------------------------------- the axes


def _public_classes(module: Any, base: type) -> list[type]:
    found: dict[type, None] = {}  # each class once (keras.regularizers.l2 is L2)
    for name in sorted(dir(module)):
        obj = getattr(module, name)
        if inspect.isclass(obj) and issubclass(obj, base) and not name.startswith("_"):
            found.setdefault(obj)
    return list(found)


# Constructor arguments for optimizers that need more than a learning rate.
OPTIMIZER_ARGS: dict[str, Callable[[], Any]] = {
    "LossScaleOptimizer": lambda: keras.optimizers.LossScaleOptimizer(keras.optimizers.Adam(0.01)),
    "MultiOptimizer": lambda: keras.optimizers.MultiOptimizer(
        keras.optimizers.OptimizerMap(
            keras.optimizers.SGD(0.05), {"head/.*": keras.optimizers.Adam(0.01)}
        )
    ),
}
NOT_OPTIMIZERS = {"Optimizer", "OptimizerMap"}  # the base class; MultiOptimizer's map


def optimizer_factories() -> dict[str, Callable[[], Any]]:
    """Every optimizer class in ``keras.optimizers``, constructible with a learning rate."""
    factories = {}
    for cls in _public_classes(keras.optimizers, keras.optimizers.Optimizer):
        name = cls.__name__
        if name in NOT_OPTIMIZERS:
            continue
        factories[name] = OPTIMIZER_ARGS.get(name, lambda cls=cls: cls(learning_rate=0.01))
    return factories


SCHEDULE_ARGS: dict[str, dict] = {
    "CosineDecay": {"initial_learning_rate": 0.01, "decay_steps": 10},
    "CosineDecayRestarts": {"initial_learning_rate": 0.01, "first_decay_steps": 3},
    "ExponentialDecay": {"initial_learning_rate": 0.01, "decay_steps": 2, "decay_rate": 0.5},
    "InverseTimeDecay": {"initial_learning_rate": 0.01, "decay_steps": 2, "decay_rate": 0.5},
    "PiecewiseConstantDecay": {"boundaries": [1], "values": [0.01, 0.005]},
    "PolynomialDecay": {"initial_learning_rate": 0.01, "decay_steps": 10},
}

# The options every optimizer takes (``keras.optimizers.Optimizer.__init__``).
OPTION_VALUES: dict[str, dict] = {
    "clipnorm": {"clipnorm": 0.01},
    "clipvalue": {"clipvalue": 0.001},
    "global_clipnorm": {"global_clipnorm": 0.01},
    "weight_decay": {"weight_decay": 0.1},
    "use_ema": {"use_ema": True},
    "ema_momentum": {"use_ema": True, "ema_momentum": 0.5},
    "ema_overwrite_frequency": {"use_ema": True, "ema_momentum": 0.5, "ema_overwrite_frequency": 2},
    "gradient_accumulation_steps": {"gradient_accumulation_steps": 2},
    "loss_scale_factor": {"loss_scale_factor": 128.0},
}


def optimizer_options() -> dict[str, dict]:
    """Every keyword of ``Optimizer.__init__`` but the learning rate and name: a value
    from ``OPTION_VALUES`` (an option missing there fails the matrix's own test)."""
    names: list[str] = []
    for cls in keras.optimizers.Optimizer.__mro__:  # the first __init__ that names them
        params = inspect.signature(cls.__init__).parameters.values()
        names = [p.name for p in params if p.kind is p.POSITIONAL_OR_KEYWORD]
        if "learning_rate" in names:
            break
    names = [n for n in names if n not in ("self", "learning_rate", "name")]
    return {n: OPTION_VALUES.get(n, {}) for n in names} | {
        k: v for k, v in OPTION_VALUES.items() if k not in names
    }


# Losses: the head whose targets each understands; special models for the rest.
LOSS_HEADS = {
    "BinaryCrossentropy": BINARY,
    "BinaryFocalCrossentropy": BINARY,
    "Hinge": BINARY,
    "SquaredHinge": BINARY,
    "CategoricalCrossentropy": CATEGORICAL,
    "CategoricalFocalCrossentropy": CATEGORICAL,
    "CategoricalHinge": CATEGORICAL,
    "KLDivergence": CATEGORICAL,
    "Dice": CATEGORICAL,
    "Tversky": CATEGORICAL,
    "SparseCategoricalCrossentropy": SPARSE,
    "CategoricalGeneralizedCrossEntropy": SPARSE,
}
NOT_LOSSES = {"Loss"}
SPECIAL_HEADS = {"CTC": SEQUENCE, "Circle": EMBEDDING}  # a sequence model; an embedding model


def loss_classes() -> list[type]:
    return [
        cls
        for cls in _public_classes(keras.losses, keras.losses.Loss)
        if cls.__name__ not in NOT_LOSSES
    ]


# Metrics: the head each one's targets belong to, and constructor arguments.
METRIC_HEADS = {
    "Accuracy": BINARY,
    "AUC": BINARY,
    "BinaryAccuracy": BINARY,
    "BinaryCrossentropy": BINARY,
    "BinaryIoU": BINARY,
    "FalseNegatives": BINARY,
    "FalsePositives": BINARY,
    "Hinge": BINARY,
    "Precision": BINARY,
    "PrecisionAtRecall": BINARY,
    "Recall": BINARY,
    "RecallAtPrecision": BINARY,
    "SensitivityAtSpecificity": BINARY,
    "SpecificityAtSensitivity": BINARY,
    "SquaredHinge": BINARY,
    "TrueNegatives": BINARY,
    "TruePositives": BINARY,
    "CategoricalAccuracy": CATEGORICAL,
    "CategoricalCrossentropy": CATEGORICAL,
    "CategoricalHinge": CATEGORICAL,
    "F1Score": CATEGORICAL,
    "FBetaScore": CATEGORICAL,
    "KLDivergence": CATEGORICAL,
    "OneHotIoU": CATEGORICAL,
    "OneHotMeanIoU": CATEGORICAL,
    "TopKCategoricalAccuracy": CATEGORICAL,
    "IoU": SPARSE,
    "MeanIoU": SPARSE,
    "SparseCategoricalAccuracy": SPARSE,
    "SparseCategoricalCrossentropy": SPARSE,
    "SparseTopKCategoricalAccuracy": SPARSE,
}
METRIC_ARGS: dict[str, dict] = {
    "IoU": {"num_classes": 3, "target_class_ids": [0, 1], "sparse_y_pred": False},
    "MeanIoU": {"num_classes": 3, "sparse_y_pred": False},
    "OneHotIoU": {"num_classes": 3, "target_class_ids": [0, 2]},
    "OneHotMeanIoU": {"num_classes": 3},
    "PrecisionAtRecall": {"recall": 0.5},
    "RecallAtPrecision": {"precision": 0.5},
    "SensitivityAtSpecificity": {"specificity": 0.5},
    "SpecificityAtSensitivity": {"sensitivity": 0.5},
    "TopKCategoricalAccuracy": {"k": 2},
    "SparseTopKCategoricalAccuracy": {"k": 2},
    "F1Score": {"average": "macro"},
    "FBetaScore": {"average": "macro", "beta": 2.0},
}
# Base classes that take a function or values rather than (y_true, y_pred).
NOT_METRICS = {"Metric", "Mean", "Sum", "MeanMetricWrapper", "Reduce"}


def metric_classes() -> list[type]:
    return [
        cls
        for cls in _public_classes(keras.metrics, keras.metrics.Metric)
        if cls.__name__ not in NOT_METRICS
    ]


REGULARIZER_ARGS: dict[str, dict] = {"L1L2": {"l1": 0.01, "l2": 0.01}}


def regularizer_classes() -> list[type]:
    return [
        cls
        for cls in _public_classes(keras.regularizers, keras.regularizers.Regularizer)
        if cls.__name__ != "Regularizer"
    ]


POLICIES = ("float32", "mixed_float16", "mixed_bfloat16")

# ---------------------------------------------------------------- expected outcomes

# Cells the exporter refuses at validation, by cell id, with the words the
# refusal must contain. Everything else must match Keras in every mode.
REFUSED: dict[str, str] = {
    "optimizer:MultiOptimizer (a function as selector)": "cannot be rebuilt from its config",
    "model class:overrides compile() only": "compile_from_config",
}


# ---------------------------------------------------------------- cells


@dataclass(frozen=True)
class Cell:
    """One setup of the matrix: the family it shows in the README, and how to build it."""

    family: str
    value: str
    spec: Spec

    @property
    def id(self) -> str:
        return f"{self.family}:{self.value}"

    @property
    def refused(self) -> str | None:
        return REFUSED.get(self.id)


def cells() -> list[Cell]:
    found: list[Cell] = []
    add = found.append
    # Every optimizer, alone and under mixed_float16 (where compile wraps it in a
    # LossScaleOptimizer, and the loss must be scaled as Keras scales it).
    for name, factory in optimizer_factories().items():
        add(Cell("optimizer", name, Spec(optimizer=factory)))
        if name not in ("LossScaleOptimizer",):
            add(
                Cell(
                    "optimizer, mixed_float16",
                    name,
                    Spec(optimizer=factory, policy="mixed_float16"),
                )
            )
    add(
        Cell(
            "optimizer",
            "MultiOptimizer (a function as selector)",
            Spec(optimizer=lambda: keras.optimizers.MultiOptimizer(_selector)),
        )
    )
    add(Cell("model class", "overrides compile() only", Spec(kind=OWN_COMPILE)))
    # Every option of the base optimizer, on Adam and on SGD with momentum.
    for option, values in optimizer_options().items():
        for base, make in (("Adam", keras.optimizers.Adam), ("SGD", _sgd_momentum)):
            add(
                Cell(
                    "optimizer option",
                    f"{option} ({base})",
                    Spec(optimizer=lambda make=make, values=values: make(0.01, **values)),
                )
            )
    for cls in _public_classes(
        keras.optimizers.schedules, keras.optimizers.schedules.LearningRateSchedule
    ):
        if cls.__name__ == "LearningRateSchedule":
            continue
        args = SCHEDULE_ARGS.get(cls.__name__, {})
        add(
            Cell(
                "learning-rate schedule",
                cls.__name__,
                Spec(optimizer=lambda cls=cls, args=args: keras.optimizers.Adam(cls(**args))),
            )
        )
    # Every dtype policy, on each kind of model; mixed also exported after the
    # global policy went back to float32 (a script that resets it, a fresh process).
    for policy in POLICIES:
        for kind in KINDS:
            add(Cell("dtype policy", f"{policy} ({kind})", Spec(kind=kind, policy=policy)))
        if policy != "float32":
            add(
                Cell(
                    "dtype policy",
                    f"{policy} (reset before export)",
                    Spec(policy=policy, reset_policy=True),
                )
            )
            add(
                Cell(
                    "dtype policy",
                    f"{policy} (SGD, categorical)",
                    Spec(policy=policy, optimizer=lambda: _sgd_momentum(0.05), head=CATEGORICAL),
                )
            )
    # Regularizers: every class as a kernel regularizer, and each place a loss is added.
    for cls in regularizer_classes():
        args = REGULARIZER_ARGS.get(cls.__name__, {})
        add(
            Cell(
                "regularizer",
                f"kernel {cls.__name__}",
                Spec(hidden={"kernel_regularizer": cls(**args)}),
            )
        )
    add(
        Cell(
            "regularizer", "bias L2", Spec(hidden={"bias_regularizer": keras.regularizers.L2(0.1)})
        )
    )
    for kind in KINDS:
        add(
            Cell(
                "regularizer",
                f"activity L2 ({kind})",
                Spec(kind=kind, hidden={"activity_regularizer": keras.regularizers.L2(0.1)}),
            )
        )
    add(Cell("regularizer", "add_loss", Spec(adds_loss=True)))
    # (Not under mixed_float16: Keras 3.15's own train_step cannot add a float16
    # activity loss to a float32 one.)
    # Every built-in loss class, on the head whose targets it understands.
    for cls in loss_classes():
        head = SPECIAL_HEADS.get(cls.__name__) or LOSS_HEADS.get(cls.__name__, REGRESSION)
        add(Cell("loss", cls.__name__, Spec(head=head, loss=cls, metrics=lambda: [])))
    # Every built-in metric class, and a stateful custom one.
    for cls in metric_classes():
        head = METRIC_HEADS.get(cls.__name__, REGRESSION)
        args = METRIC_ARGS.get(cls.__name__, {})
        add(
            Cell(
                "metric", cls.__name__, Spec(head=head, metrics=lambda cls=cls, a=args: [cls(**a)])
            )
        )
    add(Cell("metric", "custom stateful Metric", Spec(metrics=lambda: [MaxAbsError()])))
    add(
        Cell(
            "metric",
            "several, by name",
            Spec(head=BINARY, metrics=lambda: ["accuracy", "auc", "mse"]),
        )
    )
    # Layers whose training step draws random numbers or updates state.
    stateful = {
        "Dropout": lambda: [keras.layers.Dropout(0.5)],
        "GaussianNoise": lambda: [keras.layers.GaussianNoise(0.3)],
        "GaussianDropout": lambda: [keras.layers.GaussianDropout(0.3)],
        "AlphaDropout": lambda: [keras.layers.AlphaDropout(0.3)],
        "BatchNormalization": lambda: [keras.layers.BatchNormalization()],
        "Dropout (seeded) + BatchNormalization": lambda: [
            keras.layers.Dropout(0.5, seed=7),
            keras.layers.BatchNormalization(),
        ],
    }
    for name, extra in stateful.items():
        add(Cell("layers with training behaviour", name, Spec(extra=extra)))
        if name == "Dropout":
            for kind in (SEQUENTIAL,):
                add(
                    Cell(
                        "layers with training behaviour",
                        f"{name} ({kind})",
                        Spec(kind=kind, extra=extra),
                    )
                )
    add(
        Cell(
            "layers with training behaviour",
            "Dropout (mixed_float16)",
            Spec(policy="mixed_float16", extra=stateful["Dropout"]),
        )
    )
    # Several outputs, and every compile() option that changes a step.
    add(
        Cell(
            "outputs and compile options",
            "list of outputs",
            Spec(outputs=LIST, metrics=lambda: [["mae"], ["accuracy"]]),
        )
    )
    add(
        Cell(
            "outputs and compile options",
            "dict of outputs",
            Spec(outputs=DICT, metrics=lambda: {"score": ["mae"], "label": ["accuracy"]}),
        )
    )
    per_output = {"score": ["mae"], "label": ["accuracy", "auc"]}
    options = {
        "loss_weights": {"loss_weights": {"score": 0.3, "label": 2.0}},
        "metrics per output": {"metrics": per_output},
        "weighted_metrics": {"weighted_metrics": {"score": ["mse"]}},
        "jit_compile": {"jit_compile": True},
        "run_eagerly": {"run_eagerly": True},
        "steps_per_execution": {"steps_per_execution": 2},
    }
    for name, option in options.items():
        metrics = option.pop("metrics", None)
        add(
            Cell(
                "outputs and compile options",
                name,
                Spec(
                    outputs=DICT,
                    compile_options=option,
                    metrics=(lambda m=metrics: m) if metrics else (lambda: []),
                ),
            )
        )
    add(
        Cell(
            "outputs and compile options",
            "auto_scale_loss=False (mixed_float16)",
            Spec(policy="mixed_float16", compile_options={"auto_scale_loss": False}),
        )
    )
    # Every input structure on every kind of model that takes it.
    for kind in KINDS:
        for structure in STRUCTURES:
            if kind == SEQUENTIAL and structure != SINGLE:
                continue  # a Sequential model has one input
            add(Cell("inputs", f"{structure} ({kind})", Spec(kind=kind, structure=structure)))
    return found


def _selector(variable: Any) -> Any:
    return keras.optimizers.Adam(0.01) if "head" in variable.path else keras.optimizers.SGD(0.05)


def _sgd_momentum(learning_rate: float, **options: Any):
    return keras.optimizers.SGD(learning_rate, momentum=0.9, nesterov=True, **options)


def main() -> None:
    print(readme_table())


def readme_table() -> str:
    """The README's "Which models export" table for the training setups, from the matrix."""
    families: dict[str, list[Cell]] = {}
    for cell in cells():
        families.setdefault(cell.family, []).append(cell)
    lines = [
        "| family | exports in every mode, equal to Keras | refused (by name) |",
        "|---|---|---|",
    ]
    for family, group in families.items():
        ok = [c.value for c in group if not c.refused]
        refused = [f"{c.value}" for c in group if c.refused]
        lines.append(f"| {family} | {', '.join(ok) or '-'} | {', '.join(refused) or '-'} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
