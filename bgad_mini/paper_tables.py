"""The paper's own numbers (Yao et al., CVPR 2023), transcribed from seed 001, for side-by-side tables.

These are the only hand-typed numbers the book shows; each table says what its pairs mean, because the
paper's tables do not all print the same pair. Read from seed 001 (the CVPR slides' tables):

- `MVTEC_MULTI_CLASS` (the paper's Table 1, multi-class setting, N = 10 known anomalies): each per-category
  cell is **pixel AUROC / PRO**. Evidence: the "Mean" row of NFAD (0.979/0.946) and BGAD (0.992/0.976) equals
  the pixel AUROC and PRO rows of the ablation table (`HARD_SUBSETS`), whose image AUROC (0.968, 0.992) is the
  separate "Image-level Mean" row (`MVTEC_IMAGE_MEAN`). Image AUROC is printed only as that mean.
  "BGAD w/o" is listed among the unsupervised methods: BGAD trained without known anomalies. No `bgad_mini`
  method corresponds to it (`PAPER_NAME` maps none to it): `reproduce` has no column for it, and the
  Reproduction chapter shows it as the paper's only. The paper's PRO is the official code's DFR-style one, so
  our cells beside it use `pro_official_style`.
  BGAD's cells carry a ± spread (`MVTEC_MULTI_CLASS_STD`); the baselines' do not.
- `BTAD` (multi-class, the three BTAD products "01", "02", "03"): NFAD and BGAD cells are **pixel AUROC / PRO**
  like Table 1 (the mean rows are "0.978/0.778" and "0.986/0.824"; the PRO on product 02 is low for both).
- `MVTEC_ONE_CLASS` (one-class setting, ten known anomalies of one type, carpet and metal_nut): each cell is
  **image AUROC / pixel AUROC**. Evidence: the other methods of that table (DevNet, FLOS, SAOE, MLEP, DRA) are
  image-level detectors and print "x/-" (no pixel number), and NFAD's and BGAD's "Mean" rows equal the carpet
  and metal_nut cells of the semi-push-pull ablation table below, whose capsule / screw / transistor pairs
  only make sense as image / pixel AUROC (e.g. NFAD transistor 0.984/0.929; its Table 1 pixel AUROC is 0.923).
  The slide does not say on which test images; the baselines' numbers are DRA's "hard setting", which tests on
  the unseen types only, so compare with our `metrics_unseen` (and show all-types too). The slide's "Metal"
  type is MVTecAD's `metal_contamination`; the keys here are MVTecAD's folder names.
- `ONE_CLASS_OTHERS`: image AUROC of the other supervised methods in the one-class table, as printed
  (FLOS metal_nut/color is printed "0.9788", four digits, kept as printed).
- `SEMI_PUSH_PULL` (ablation "Effect of Semi-Push-Pull Mechanism": NFAD / BGAD† (conventional contrastive
  loss) / BGAD on carpet, metal_nut, capsule, screw, transistor): **image AUROC / pixel AUROC**, as argued above.
- `HARD_SUBSETS` (ablation on all of MVTecAD, hard subsets and unseen subsets): image AUROC, pixel AUROC and PRO
  of NFAD and BGAD, one number each. Its BGAD image AUROC on MVTecAD is 0.992, Table 1's image-level mean 0.993;
  both are as printed. The "+2.5%" style gains are absolute points, relative to NFAD.

Every value is a python float exactly as printed (three decimals, stds four). Introduced in the *Ablations*
chapter (and `bgad-mini reproduce`).
"""
from __future__ import annotations

CITATION = ("Yao, Li, Zhang, Sun, Zhang. Explicit Boundary Guided Semi-Push-Pull Contrastive Learning for "
            "Supervised Anomaly Detection. CVPR 2023")
LABEL_TABLE1 = "paper (Yao et al. 2023, Table 1)"
LABEL_BTAD = "paper (Yao et al. 2023, BTAD table)"
LABEL_ONE_CLASS = "paper (Yao et al. 2023, one-class table)"
LABEL_SEMI_PUSH_PULL = "paper (Yao et al. 2023, semi-push-pull ablation)"
LABEL_HARD_SUBSETS = "paper (Yao et al. 2023, hard-subsets ablation)"

#: MVTecAD categories in the paper's Table 1 order (textures, then objects), with MVTecAD's folder names.
TEXTURES = ("carpet", "grid", "leather", "tile", "wood")
OBJECTS = ("bottle", "cable", "capsule", "hazelnut", "metal_nut", "pill", "screw", "toothbrush", "transistor",
           "zipper")
MVTEC_ORDER = TEXTURES + OBJECTS

#: Table 1 methods transcribed here (the slide also lists DRAEM, PaDiM, MSFD, PatchCore, CFA: not transcribed).
TABLE1_METHODS = ("NFAD", "BGAD_wo", "BGAD")

#: Table 1, multi-class setting: category -> method -> (pixel AUROC, PRO).
MVTEC_MULTI_CLASS: dict[str, dict[str, tuple[float, float]]] = {
    "carpet":     {"NFAD": (0.994, 0.983), "BGAD_wo": (0.994, 0.982), "BGAD": (0.996, 0.989)},
    "grid":       {"NFAD": (0.993, 0.980), "BGAD_wo": (0.994, 0.980), "BGAD": (0.995, 0.986)},
    "leather":    {"NFAD": (0.997, 0.994), "BGAD_wo": (0.997, 0.994), "BGAD": (0.998, 0.994)},
    "tile":       {"NFAD": (0.969, 0.929), "BGAD_wo": (0.968, 0.927), "BGAD": (0.994, 0.978)},
    "wood":       {"NFAD": (0.969, 0.957), "BGAD_wo": (0.970, 0.957), "BGAD": (0.982, 0.970)},
    "bottle":     {"NFAD": (0.988, 0.965), "BGAD_wo": (0.989, 0.964), "BGAD": (0.994, 0.971)},
    "cable":      {"NFAD": (0.975, 0.944), "BGAD_wo": (0.980, 0.968), "BGAD": (0.986, 0.977)},
    "capsule":    {"NFAD": (0.989, 0.952), "BGAD_wo": (0.992, 0.959), "BGAD": (0.992, 0.964)},
    "hazelnut":   {"NFAD": (0.984, 0.976), "BGAD_wo": (0.985, 0.976), "BGAD": (0.995, 0.982)},
    "metal_nut":  {"NFAD": (0.971, 0.942), "BGAD_wo": (0.976, 0.948), "BGAD": (0.996, 0.970)},
    "pill":       {"NFAD": (0.976, 0.978), "BGAD_wo": (0.980, 0.980), "BGAD": (0.996, 0.988)},
    "screw":      {"NFAD": (0.988, 0.945), "BGAD_wo": (0.992, 0.960), "BGAD": (0.993, 0.968)},
    "toothbrush": {"NFAD": (0.983, 0.904), "BGAD_wo": (0.986, 0.938), "BGAD": (0.995, 0.961)},
    "transistor": {"NFAD": (0.923, 0.788), "BGAD_wo": (0.940, 0.830), "BGAD": (0.983, 0.972)},
    "zipper":     {"NFAD": (0.986, 0.957), "BGAD_wo": (0.987, 0.957), "BGAD": (0.993, 0.977)},
}

#: Table 1, BGAD's printed spread: category -> (± pixel AUROC, ± PRO).
MVTEC_MULTI_CLASS_STD: dict[str, tuple[float, float]] = {
    "carpet": (0.0002, 0.0004), "grid": (0.0002, 0.0001), "leather": (0.0001, 0.0003), "tile": (0.0077, 0.0021),
    "wood": (0.0053, 0.0007), "bottle": (0.0009, 0.0011), "cable": (0.0010, 0.0030), "capsule": (0.0021, 0.0033),
    "hazelnut": (0.0040, 0.0028), "metal_nut": (0.0003, 0.0012), "pill": (0.0002, 0.0005),
    "screw": (0.0003, 0.0010), "toothbrush": (0.0003, 0.0026), "transistor": (0.0005, 0.0015),
    "zipper": (0.0003, 0.0002),
}

#: Table 1 "Mean" row over the 15 categories: method -> (pixel AUROC, PRO); BGAD ± (0.0007, 0.0006).
MVTEC_MULTI_CLASS_MEAN: dict[str, tuple[float, float]] = {
    "NFAD": (0.979, 0.946), "BGAD_wo": (0.982, 0.955), "BGAD": (0.992, 0.976),
}
MVTEC_MULTI_CLASS_MEAN_STD: tuple[float, float] = (0.0007, 0.0006)

#: Table 1 "Image-level Mean" row (image AUROC, mean over the 15 categories); BGAD ± 0.0012.
MVTEC_IMAGE_MEAN: dict[str, float] = {"NFAD": 0.968, "BGAD_wo": 0.974, "BGAD": 0.993}
MVTEC_IMAGE_MEAN_STD: float = 0.0012

#: BTAD, multi-class: product -> method -> (pixel AUROC, PRO); "mean" is the printed mean row.
BTAD: dict[str, dict[str, tuple[float, float]]] = {
    "01":   {"NFAD": (0.972, 0.767), "BGAD": (0.982, 0.830)},
    "02":   {"NFAD": (0.967, 0.578), "BGAD": (0.979, 0.648)},
    "03":   {"NFAD": (0.996, 0.988), "BGAD": (0.998, 0.993)},
    "mean": {"NFAD": (0.978, 0.778), "BGAD": (0.986, 0.824)},
}
#: BTAD, BGAD's printed spread: product -> (± pixel AUROC, ± PRO).
BTAD_STD: dict[str, tuple[float, float]] = {
    "01": (0.0027, 0.0318), "02": (0.0018, 0.0173), "03": (0.0003, 0.0005), "mean": (0.0015, 0.0163),
}

#: One-class setting, ten known anomalies of the named type: category -> known type -> method ->
#: (image AUROC, pixel AUROC). "mean" is the printed mean row. `metal_contamination` is the slide's "Metal".
MVTEC_ONE_CLASS: dict[str, dict[str, dict[str, tuple[float, float]]]] = {
    "carpet": {
        "color":               {"NFAD": (0.998, 0.993), "BGAD": (1.000, 0.993)},
        "cut":                 {"NFAD": (0.998, 0.995), "BGAD": (0.998, 0.996)},
        "hole":                {"NFAD": (0.997, 0.993), "BGAD": (0.998, 0.995)},
        "metal_contamination": {"NFAD": (0.998, 0.993), "BGAD": (1.000, 0.994)},
        "thread":              {"NFAD": (1.000, 0.995), "BGAD": (1.000, 0.996)},
        "mean":                {"NFAD": (0.998, 0.994), "BGAD": (0.999, 0.995)},
    },
    "metal_nut": {
        "bent":    {"NFAD": (0.977, 0.959), "BGAD": (1.000, 0.972)},
        "color":   {"NFAD": (0.977, 0.963), "BGAD": (0.999, 0.973)},
        "flip":    {"NFAD": (0.976, 0.977), "BGAD": (0.995, 0.982)},
        "scratch": {"NFAD": (1.000, 0.965), "BGAD": (1.000, 0.972)},
        "mean":    {"NFAD": (0.983, 0.966), "BGAD": (0.998, 0.975)},
    },
}

#: One-class table, the other supervised methods' image AUROC: category -> known type -> method -> value.
ONE_CLASS_OTHERS: dict[str, dict[str, dict[str, float]]] = {
    "carpet": {
        "color":               {"DevNet": 0.767, "FLOS": 0.760, "SAOE": 0.467, "MLEP": 0.689, "DRA": 0.886},
        "cut":                 {"DevNet": 0.819, "FLOS": 0.688, "SAOE": 0.793, "MLEP": 0.653, "DRA": 0.922},
        "hole":                {"DevNet": 0.814, "FLOS": 0.733, "SAOE": 0.831, "MLEP": 0.674, "DRA": 0.922},
        "metal_contamination": {"DevNet": 0.863, "FLOS": 0.678, "SAOE": 0.883, "MLEP": 0.764, "DRA": 0.933},
        "thread":              {"DevNet": 0.972, "FLOS": 0.946, "SAOE": 0.834, "MLEP": 0.967, "DRA": 0.989},
        "mean":                {"DevNet": 0.847, "FLOS": 0.761, "SAOE": 0.762, "MLEP": 0.751, "DRA": 0.935},
    },
    "metal_nut": {
        "bent":    {"DevNet": 0.904, "FLOS": 0.827, "SAOE": 0.901, "MLEP": 0.956, "DRA": 0.990},
        "color":   {"DevNet": 0.978, "FLOS": 0.9788, "SAOE": 0.879, "MLEP": 0.945, "DRA": 0.967},
        "flip":    {"DevNet": 0.987, "FLOS": 0.942, "SAOE": 0.795, "MLEP": 0.805, "DRA": 0.913},
        "scratch": {"DevNet": 0.991, "FLOS": 0.943, "SAOE": 0.845, "MLEP": 0.805, "DRA": 0.911},
        "mean":    {"DevNet": 0.965, "FLOS": 0.922, "SAOE": 0.855, "MLEP": 0.878, "DRA": 0.945},
    },
}

#: Semi-push-pull ablation: category -> method -> (image AUROC, pixel AUROC). "BGAD_dagger" is BGAD†,
#: the variant with a conventional contrastive (push-pull) loss instead of BG-SPP (our `pushpull` method).
SEMI_PUSH_PULL: dict[str, dict[str, tuple[float, float]]] = {
    "carpet":     {"NFAD": (0.998, 0.994), "BGAD_dagger": (0.998, 0.994), "BGAD": (0.999, 0.995)},
    "metal_nut":  {"NFAD": (0.983, 0.966), "BGAD_dagger": (0.997, 0.927), "BGAD": (0.998, 0.975)},
    "capsule":    {"NFAD": (0.941, 0.990), "BGAD_dagger": (0.868, 0.963), "BGAD": (0.988, 0.991)},
    "screw":      {"NFAD": (0.885, 0.989), "BGAD_dagger": (0.823, 0.980), "BGAD": (0.947, 0.991)},
    "transistor": {"NFAD": (0.984, 0.929), "BGAD_dagger": (0.933, 0.847), "BGAD": (0.994, 0.942)},
}

#: Hard-subsets ablation: subset -> method -> {image_auroc, pixel_auroc, pro}.
HARD_SUBSETS: dict[str, dict[str, dict[str, float]]] = {
    "mvtecad": {"NFAD": {"image_auroc": 0.968, "pixel_auroc": 0.979, "pro": 0.946},
                "BGAD": {"image_auroc": 0.992, "pixel_auroc": 0.992, "pro": 0.976}},
    "hard":    {"NFAD": {"image_auroc": 0.948, "pixel_auroc": 0.960, "pro": 0.863},
                "BGAD": {"image_auroc": 0.984, "pixel_auroc": 0.986, "pro": 0.949}},
    "unseen":  {"NFAD": {"image_auroc": 0.948, "pixel_auroc": 0.960, "pro": 0.863},
                "BGAD": {"image_auroc": 0.971, "pixel_auroc": 0.982, "pro": 0.930}},
}

#: Our method name -> the paper's column name (methods without a paper column are absent; BGAD w/o has no
#: bgad_mini method).
PAPER_NAME = {"bgad": "BGAD", "nf": "NFAD", "pushpull": "BGAD_dagger"}
#: How to print the paper's column names.
DISPLAY = {"NFAD": "NFAD", "BGAD_wo": "BGAD w/o", "BGAD": "BGAD", "BGAD_dagger": "BGAD†"}


def multi_class_cell(category: str, method: str = "bgad") -> dict | None:
    """The paper's multi-class numbers for one of our categories and methods, or None where it has none.

    Returns {"label", "pixel_auroc", "pro", "pixel_auroc_std", "pro_std"} (stds None where not printed):
    MVTecAD categories come from Table 1, BTAD products ("01", "02", "03") from the BTAD table.
    """
    name = PAPER_NAME.get(method)
    if name is None:
        return None
    if category in MVTEC_MULTI_CLASS and name in MVTEC_MULTI_CLASS[category]:
        (pix, pro), label = MVTEC_MULTI_CLASS[category][name], LABEL_TABLE1
        std = MVTEC_MULTI_CLASS_STD[category] if name == "BGAD" else (None, None)
    elif category in BTAD and category != "mean" and name in BTAD[category]:
        (pix, pro), label = BTAD[category][name], LABEL_BTAD
        std = BTAD_STD[category] if name == "BGAD" else (None, None)
    else:
        return None
    return {"label": label, "pixel_auroc": pix, "pro": pro, "pixel_auroc_std": std[0], "pro_std": std[1]}


def one_class_cell(category: str, known_type: str, method: str = "bgad") -> dict | None:
    """The paper's one-class (image AUROC, pixel AUROC) for a category and known type, or None."""
    name = PAPER_NAME.get(method)
    cell = MVTEC_ONE_CLASS.get(category, {}).get(known_type, {}).get(name or "")
    if cell is None:
        return None
    return {"label": LABEL_ONE_CLASS, "image_auroc": cell[0], "pixel_auroc": cell[1]}
