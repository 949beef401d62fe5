"""Sequential MNIST and spoken digits: each experiment's smoke run learns; the audio
features put a tone's energy in the right mel band; a bad WAV is one clear line
(exit code 2) naming the file."""

import os
import wave

import numpy as np
import pytest

from conftest import SHARED_DATA
from deeplearn_jax import cli
from deeplearn_jax.data import spoken_digit
from deeplearn_jax.errors import DataError
from experiments import sequential_mnist, spoken_digits


def test_sequential_mnist_smoke_learns(tmp_path):
  # The row-by-row LSTM: the hierarchical one reads 28 x as many sequences, too slow
  # for the suite (its model is tested in test_rnn.py).
  config = cli.load_config("experiments/sequential_mnist.py:lstm_rows,smoke")
  results = sequential_mnist.train_and_evaluate(config, str(tmp_path))
  assert results["test_accuracy"] > 0.2  # chance: 0.1 (the 360 held-out digits)


def test_spoken_digits_smoke_learns(tmp_path):
  if not os.path.isdir(os.path.join(SHARED_DATA, "spoken_digit", "recordings")):
    pytest.skip(f"real data not found at {SHARED_DATA}")
  config = cli.load_config("experiments/spoken_digits.py:smoke",
                           [f"--config.data.manual_dir={SHARED_DATA}"])
  results = spoken_digits.train_and_evaluate(config, str(tmp_path))
  assert results["test_accuracy"] > 0.3  # chance: 0.1 (300 clips of 6 speakers)


def _tone(freq: float, seconds: float = 0.5) -> np.ndarray:
  t = np.arange(int(spoken_digit.SAMPLE_RATE * seconds)) / spoken_digit.SAMPLE_RATE
  return 0.5 * np.sin(2 * np.pi * freq * t).astype(np.float32)


def test_features_shape_and_tone_band():
  frame, hop, n_mels = 256, 128, 40
  waves = np.stack([_tone(500.0), _tone(1000.0), _tone(3000.0)])
  logmel = np.asarray(spoken_digit.features(waves, n_mels, 0, frame, hop))
  # 4,000 samples: frames start every 128 samples while a whole 256 fits (30 of them).
  assert logmel.shape == (3, 30, n_mels)
  assert spoken_digit.num_frames(4000, frame, hop) == 31  # a padded clip also keeps the rest
  assert np.asarray(spoken_digit.features(waves, n_mels, 13, frame, hop)).shape[-1] == 13
  bank = spoken_digit.mel_filterbank(n_mels, frame)
  bands = logmel.mean(axis=1).argmax(axis=-1)
  for freq, band in zip((500.0, 1000.0, 3000.0), bands):
    # The band whose triangle is highest at the tone's FFT bin.
    assert band == bank[round(freq / spoken_digit.SAMPLE_RATE * frame)].argmax()
  assert bands[0] < bands[1] < bands[2]
  # The energy is in that band, not spread: 100x (log 4.6) above the median band.
  spectrum = logmel[1].mean(axis=0)
  assert spectrum.max() - np.median(spectrum) > np.log(100.0)


def _write_wav(path, samples, width=2, rate=8000):
  with wave.open(str(path), "wb") as f:
    f.setnchannels(1)
    f.setsampwidth(width)
    f.setframerate(rate)
    f.writeframes(samples.tobytes())


@pytest.fixture
def recordings(tmp_path):
  """A tiny FSDD folder: digits 0 and 1 of speakers a and b, indices 0..5 (tones)."""
  folder = tmp_path / "spoken_digit" / "recordings"
  folder.mkdir(parents=True)
  for d in (0, 1):
    for s in ("a", "b"):
      for i in range(6):
        tone = _tone(400.0 + 800.0 * d + 50.0 * i, 0.3)
        _write_wav(folder / f"{d}_{s}_{i}.wav", (tone * 20000).astype("<i2"))
  return tmp_path, folder


def _config(manual_dir):
  return cli.load_config("experiments/spoken_digits.py:smoke",
                         [f"--config.data.manual_dir={manual_dir}"])


def test_tiny_folder_loads(recordings):
  manual_dir, _ = recordings
  ds = spoken_digit.load(_config(manual_dir).data)
  test = ds.test.gather(np.arange(10))
  assert test["input"].shape[2] == 40 and ds.num_classes == 10
  assert (test["lengths"] == spoken_digit.num_frames(2400, 256, 256)).all()
  # clip_norm takes each clip's own mean off: every clip's mean frame is then the same.
  config = _config(manual_dir)
  with config.unlocked():
    config.data.clip_norm = True
  normed = spoken_digit.load(config.data).test.gather(np.arange(10))["input"]
  means = normed.mean(axis=1)  # all frames are valid (equal lengths)
  assert np.allclose(means, means[0], atol=1e-4)
  assert not np.allclose(test["input"].mean(axis=1), test["input"].mean(axis=1)[0], atol=1e-2)


def _corrupt_truncated(path):
  raw = path.read_bytes()
  path.write_bytes(raw[:len(raw) // 2])  # the header still says the full length


def _corrupt_garbage(path):
  path.write_bytes(b"this is not a wav file at all" * 10)


def _corrupt_8bit(path):
  _write_wav(path, np.full(2400, 128, np.uint8), width=1)


def _corrupt_missing(path):
  path.unlink()


@pytest.mark.parametrize("corrupt, says", [
    (_corrupt_truncated, "truncated"), (_corrupt_garbage, "corrupt WAV file"),
    (_corrupt_8bit, "8-bit samples"), (_corrupt_missing, "missing WAV file")])
def test_bad_wav_is_one_line_naming_the_file(recordings, tmp_path, capsys, corrupt, says):
  manual_dir, folder = recordings
  bad = folder / "1_b_3.wav"
  corrupt(bad)
  with pytest.raises(DataError) as caught:
    spoken_digits.train_and_evaluate(_config(manual_dir), str(tmp_path / "run"))
  message = str(caught.value)
  assert "\n" not in message and says in message and str(bad) in message
  assert caught.value.exit_code == 2
  with pytest.raises(SystemExit) as exited:  # what the command line does with it
    cli.fail(message, caught.value.exit_code)
  assert exited.value.code == 2
  assert capsys.readouterr().err == f"error: {message}\n"
  assert not (tmp_path / "run").exists()
