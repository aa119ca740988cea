"""predict and export on a fake finished run: a small untrained airbench saved as model.keras beside its
config.json (nothing is trained). Images are written with Pillow in the formats and modes people have."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cifar100_helpers import config, data, evaluation, generated_data, models
from cifar100_helpers.commands import cli, export, predict
from cifar100_helpers.commands.export import write_tflite
from cifar100_helpers.running.run_dir import RunDir

from .conftest import SHARED_DATA

REAL = SHARED_DATA / "cifar-100-python.tar.gz"
EXTRA = "needs the optional extra: pip install -e .[export]"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, first20) -> Path:
    """A finished run directory as `run` leaves it, as far as predict and export look: model.keras and
    config.json (tta flip). The output layer gets large random weights, so that the untrained model's
    probabilities are peaked and differ between images."""
    import keras

    cfg = config.make_config("smoke")
    model = models.build(cfg, whitening_images=first20[0])
    kernel, bias = model.layers[-1].get_weights()
    model.layers[-1].set_weights([np.random.default_rng(0).normal(0, 10, kernel.shape).astype(np.float32), bias])
    run = RunDir(tmp_path_factory.mktemp("run") / "smoke-run")
    run.create()
    run.config.write_text(json.dumps(cfg.to_dict()))
    model.save(run.model)
    assert isinstance(keras.models.load_model(run.model), keras.Model)
    return run.root


@pytest.fixture(scope="module")
def model(run_dir):
    return predict.load_model(RunDir(run_dir))


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


# --------------------------------------------------------------------------- reading images


def test_lossless_images_read_back_exactly(tmp_path, first20):
    x = first20[0][:3]
    Image.fromarray(x[0]).save(tmp_path / "same.png")
    Image.fromarray(x[1]).resize((128, 128), Image.Resampling.NEAREST).save(tmp_path / "x4.png")
    tall = np.full((192, 128, 3), 7, np.uint8)  # the image in the central square, other content above and below
    tall[32:160] = np.asarray(Image.fromarray(x[2]).resize((128, 128), Image.Resampling.NEAREST))
    Image.fromarray(tall).save(tmp_path / "tall.png")
    assert np.array_equal(predict.read_image(tmp_path / "same.png"), x[0])
    assert np.array_equal(predict.read_image(tmp_path / "x4.png"), x[1])  # area averaging of 4x4 blocks
    assert np.array_equal(predict.read_image(tmp_path / "tall.png"), x[2])  # central square crop
    squashed = predict.read_image(tmp_path / "tall.png", crop=False)
    assert squashed.shape == (32, 32, 3) and not np.array_equal(squashed, x[2])


def test_every_mode_becomes_32x32_rgb(tmp_path, first20):
    x = first20[0][0]
    rgba = np.dstack([x, np.full((32, 32), 255, np.uint8)])
    rgba[:16, :, 3] = 0  # top half transparent: composited onto white
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    Image.fromarray(x).convert("L").save(tmp_path / "grey.png")
    Image.fromarray(x).convert("P").save(tmp_path / "palette.png")
    Image.fromarray(x[..., 0].astype(np.uint16) * 257).save(tmp_path / "grey16.png")
    Image.fromarray(x).convert("CMYK").resize((50, 40)).save(tmp_path / "cmyk.jpg")
    Image.fromarray(x).resize((16, 20)).save(tmp_path / "tiny.png")
    got = {p.stem: predict.read_image(p) for p in tmp_path.iterdir()}
    assert all(v.shape == (32, 32, 3) and v.dtype == np.uint8 for v in got.values())
    assert np.all(got["rgba"][:16] == 255) and np.array_equal(got["rgba"][16:], x[16:])
    grey = np.asarray(Image.fromarray(x).convert("L"))
    assert np.array_equal(got["grey"], np.repeat(grey[..., None], 3, axis=2))
    assert np.array_equal(got["palette"], np.asarray(Image.fromarray(x).convert("P").convert("RGB")))
    assert np.array_equal(got["grey16"], np.repeat(x[..., :1], 3, axis=2))


def test_exif_orientation_is_applied(tmp_path, first20):
    x = first20[0][5]
    exif = Image.Exif()
    exif[0x0112] = 3  # stored upside down: viewers rotate it 180 degrees
    Image.fromarray(x[::-1, ::-1]).resize((96, 96), Image.Resampling.NEAREST).save(
        tmp_path / "phone.jpg", quality=95, exif=exif
    )
    got = predict.read_image(tmp_path / "phone.jpg").astype(int)
    assert np.abs(got - x).mean() < np.abs(got - x[::-1, ::-1]).mean() / 2


# --------------------------------------------------------------------------- predict


def write_mixed_folder(folder: Path, x: np.ndarray) -> list[str]:
    """Images of several sizes, modes and formats, plus a text file and a subfolder; the image names."""
    folder.mkdir()
    Image.fromarray(x[0]).resize((640, 480), Image.Resampling.BICUBIC).save(folder / "a_photo.jpg", quality=90)
    Image.fromarray(x[1]).convert("RGBA").resize((50, 50)).save(folder / "b_rgba.png")
    Image.fromarray(x[2]).convert("L").resize((100, 60)).save(folder / "c_grey.png")
    Image.fromarray(x[3]).convert("P").save(folder / "d_palette.png")
    Image.fromarray(x[4]).resize((16, 20)).save(folder / "e_tiny.png")
    (folder / "notes.txt").write_text("not an image")
    (folder / "more").mkdir()
    return ["a_photo.jpg", "b_rgba.png", "c_grey.png", "d_palette.png", "e_tiny.png"]


def test_predict_folder_and_files_text(run_dir, tmp_path, first20, capsys):
    names = write_mixed_folder(tmp_path / "photos", first20[0])
    Image.fromarray(first20[0][6]).save(tmp_path / "single.png")
    code, out, err = run_cli(capsys, "predict", run_dir, tmp_path / "single.png", tmp_path / "photos")
    assert code == 0, err
    assert "notes.txt (not an image)" in err and "more" in err
    assert out.startswith("6 image(s), central square crop, then area averaging") and "TTA flip" in out
    for name in [*names, "single.png"]:
        assert name in out
    assert out.count("  5. ") == 6 and out.count("superclass: ") == 6


def test_predict_json_top5_probabilities_and_superclass(run_dir, model, tmp_path, first20, capsys):
    names = write_mixed_folder(tmp_path / "photos", first20[0])
    code, out, _ = run_cli(capsys, "predict", run_dir, tmp_path / "photos", "--json")
    assert code == 0
    result = json.loads(out)
    assert result["tta"] == "flip" and len(result["skipped"]) == 2
    assert [Path(p["file"]).name for p in result["predictions"]] == names
    images = np.stack([predict.read_image(tmp_path / "photos" / n) for n in names])
    expected = evaluation.predict(model, images, tta="flip")
    for p, row in zip(result["predictions"], expected, strict=True):
        probs = [t["probability"] for t in p["top"]]
        assert len(probs) == 5 and probs == sorted(probs, reverse=True) and sum(probs) <= 1 + 1e-5
        assert np.allclose(probs, np.sort(row)[::-1][:5], atol=1e-5)
        fine = generated_data.FINE_NAMES.index(p["top"][0]["class"])
        assert p["superclass"] == generated_data.COARSE_NAMES[generated_data.FINE_TO_COARSE[fine]]
        members = [i for i, c in enumerate(generated_data.FINE_TO_COARSE) if c == generated_data.FINE_TO_COARSE[fine]]
        assert p["superclass_probability"] == pytest.approx(row[members].sum(), abs=1e-5)
    assert max(p["top"][0]["probability"] for p in result["predictions"]) > 0.1  # peaked, so ranks mean something


def test_predict_real_test_images_match_the_report_path(run_dir, model, tmp_path, first20, capsys):
    """The first 20 real test images as PNG files give what notebook 04 computes from the arrays."""
    x, _ = first20
    for i, image in enumerate(x):
        Image.fromarray(image).save(tmp_path / f"test{i:02d}.png")
    code, out, _ = run_cli(capsys, "predict", run_dir, tmp_path, "--json", "--top", "3")
    assert code == 0
    expected = predict.classify(model, x, "flip", top=3)
    got = json.loads(out)["predictions"]
    assert len(got) == 20
    for g, e in zip(got, expected, strict=True):
        assert [t["class"] for t in g["top"]][0] == e.top[0][0] and g["superclass"] == e.superclass
        assert np.allclose([t["probability"] for t in g["top"]], [p for _, p in e.top], atol=1e-5)


def test_predict_bad_input_is_one_line_with_the_fix(run_dir, tmp_path, first20, capsys):
    image = tmp_path / "ok.png"
    Image.fromarray(first20[0][0]).save(image)
    (tmp_path / "text.jpg").write_text("not a jpeg")
    (tmp_path / "empty").mkdir()
    (tmp_path / "only-text").mkdir()
    (tmp_path / "only-text" / "readme.txt").write_text("hello")
    (tmp_path / "truncated.jpg").write_bytes((tmp_path / "ok.png").read_bytes()[:60])
    (tmp_path / "no-model").mkdir()
    cases = [
        (["predict", tmp_path / "nowhere", image], "no such run directory"),
        (["predict", tmp_path / "no-model", image], "has no model.keras"),
        (["predict", run_dir, tmp_path / "text.jpg"], "text.jpg: not an image"),
        (["predict", run_dir, tmp_path / "empty"], "empty holds no image files"),
        (["predict", run_dir, tmp_path / "only-text"], "only-text holds no image files"),
        (["predict", run_dir, tmp_path / "missing.png"], "missing.png: no such file or folder"),
        (["predict", run_dir, tmp_path / "truncated.jpg"], "truncated.jpg: not a readable image"),
    ]
    for argv, message in cases:
        code, out, err = run_cli(capsys, *argv)
        assert code == 2 and out == "", argv
        assert err.startswith("error: ") and err.count("\n") == 1 and message in err, err


def test_run_without_config_json(tmp_path, run_dir, first20, capsys):
    copy = tmp_path / "copied"
    copy.mkdir()
    (copy / "model.keras").write_bytes((run_dir / "model.keras").read_bytes())
    Image.fromarray(first20[0][0]).save(tmp_path / "ok.png")
    code, _, err = run_cli(capsys, "predict", copy, tmp_path / "ok.png")
    assert code == 2 and "has no config.json" in err


@pytest.mark.skipif(not REAL.exists(), reason=f"real CIFAR-100 not present at {REAL} (fresh clone)")
def test_class_tables_match_the_real_archive():
    """predict names classes from the fixed tables in generated_data: they must be the real archive's."""
    members = data.read_members(REAL)
    assert data.names(members["meta"], "fine_label_names", 100) == tuple(generated_data.FINE_NAMES)
    assert data.names(members["meta"], "coarse_label_names", 20) == tuple(generated_data.COARSE_NAMES)
    train = data.to_split(members["train"], "train")
    mapping = np.zeros(100, np.int64)
    mapping[train.fine] = train.coarse
    assert mapping.tolist() == list(generated_data.FINE_TO_COARSE)
    assert {tuple(sorted(set(train.coarse[train.fine == f]))) for f in range(100)} == {(c,) for c in range(20)}


# --------------------------------------------------------------------------- export


def reload(fmt: str, path: Path):
    """The artifact as a function of float32 images, loaded with its runtime (not through export.py)."""
    if fmt == "savedmodel":
        import tensorflow as tf

        loaded = tf.saved_model.load(str(path))
        spec = loaded.serve.concrete_functions[0].structured_input_signature[0][0]
        assert spec.shape.as_list() == [None, 32, 32, 3] and spec.dtype == tf.float32
        return lambda x: loaded.serve(tf.constant(x)).numpy()
    if fmt == "tflite":
        if importlib.util.find_spec("ai_edge_litert"):
            from ai_edge_litert.interpreter import Interpreter
        else:  # TensorFlow's own, deprecated but still in TF 2.21
            import tensorflow as tf

            Interpreter = tf.lite.Interpreter

        def run(x):
            interpreter = Interpreter(model_path=str(path))
            source = interpreter.get_input_details()[0]
            assert list(source["shape_signature"]) == [-1, 32, 32, 3] and source["dtype"] == np.float32
            interpreter.resize_tensor_input(source["index"], list(x.shape))
            interpreter.allocate_tensors()
            interpreter.set_tensor(source["index"], x)
            interpreter.invoke()
            return interpreter.get_tensor(interpreter.get_output_details()[0]["index"])

        return run
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    source = session.get_inputs()[0]
    assert source.shape[1:] == [32, 32, 3] and source.type == "tensor(float)"
    return lambda x: session.run(None, {source.name: x})[0]


RUNTIMES = {"savedmodel": [], "tflite": [], "onnx": ["tf2onnx", "onnx", "onnxruntime"]}  # beyond TensorFlow


@pytest.mark.parametrize("fmt", list(export.FORMATS))
def test_export_reloads_with_equal_predictions(fmt, run_dir, model, tmp_path, first20, capsys):
    absent = [m for m in RUNTIMES[fmt] if importlib.util.find_spec(m) is None]
    if absent:
        pytest.skip(f"{fmt} export {EXTRA} ({', '.join(absent)} missing)")
    output = tmp_path / RunDir(run_dir).export(fmt).name
    code, out, err = run_cli(capsys, "export", run_dir, "--format", fmt, "--output", output)
    assert code == 0, err
    assert f"Saved {output}" in out and "Checked with" in out
    x = first20[0].astype(np.float32)
    got = reload(fmt, output)(x)
    expected = model.predict(x, verbose=0)
    assert got.shape == (20, 100)
    assert np.allclose(got, expected, atol=1e-4)
    assert np.allclose(got.sum(axis=1), 1, atol=1e-4)


def test_tflite_export_without_keras_litert(run_dir, model, tmp_path, first20, capsys, monkeypatch):
    """Keras before 3.13 (3.10 on Colab's TF 2.19 stack) has no format="litert": export.py converts a SavedModel
    itself, and the artifact must be as good."""
    converted = []
    monkeypatch.setattr(export, "keras_exports_litert", lambda: False)
    monkeypatch.setattr(export, "write_tflite", lambda *args: converted.append(args) or write_tflite(*args))
    test_export_reloads_with_equal_predictions("tflite", run_dir, model, tmp_path, first20, capsys)
    assert len(converted) == 1


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])  # a GPU's; a TPU's and a bf16 CPU's
def test_mixed_precision_model_is_exported_in_float32(policy):
    import keras

    keras.mixed_precision.set_global_policy(policy)
    try:
        mixed = models.build(config.make_config("smoke", start_size=24))  # also: any input size
    finally:
        keras.mixed_precision.set_global_policy("float32")
    copy = export.float32_model(mixed)
    assert {layer.dtype_policy.name for layer in copy._flatten_layers()} == {"float32"}
    x = export.check_images(4)
    assert np.allclose(copy.predict(x, verbose=0), mixed.predict(x, verbose=0), atol=1e-2)
    assert export.float32_model(copy) is copy


def test_export_bad_input_is_one_line_with_the_fix(run_dir, tmp_path, capsys, monkeypatch):
    taken = tmp_path / "taken.onnx"
    taken.write_text("")
    cases = [
        (["export", tmp_path / "nowhere", "--format", "savedmodel"], "no such run directory"),
        (["export", run_dir, "--format", "tflite", "--output", tmp_path / "m.onnx"], "ending in .tflite"),
        (["export", run_dir, "--format", "onnx", "--output", taken], "already exists and is never overwritten"),
    ]
    for argv, message in cases:
        code, _, err = run_cli(capsys, *argv)
        assert code == 2 and err.startswith("error: ") and err.count("\n") == 1 and message in err, err
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "tf2onnx" else real(name, *a))
    code, _, err = run_cli(capsys, "export", run_dir, "--format", "onnx", "--output", tmp_path / "m.onnx")
    assert code == 2 and "needs tf2onnx" in err and "pip install -e .[export]" in err
    assert not (tmp_path / "m.onnx").exists()
