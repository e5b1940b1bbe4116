"""Corpus adapters on small fake trees that follow each corpus's real naming convention."""

import collections
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import EMODB

import ser_dist.data.corpora  # noqa: F401  registers the adapters
from ser_dist.config import Data
from ser_dist.data.records import DataError
from ser_dist.errors import ConfigError
from ser_dist.registry import CORPORA


def write_wav(path: Path, seconds: float = 0.1, sample_rate: int = 16000) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    noise = np.random.default_rng(len(path.name)).uniform(-0.1, 0.1, int(seconds * sample_rate)).astype(np.float32)
    sf.write(path, noise, sample_rate)
    return path


def scan(corpus: str, root: Path, **data):
    return CORPORA.get(corpus)(root, Data(corpus=corpus, root=str(root), **data))


def by_name(records) -> dict:
    return {Path(r.path).name: r for r in records}


def reasons(problems) -> dict:
    return {Path(path).name: reason for path, reason in problems}


def test_every_adapter_is_registered():
    for name in ("iemocap", "crema_d", "ravdess", "tess", "emodb", "savee"):
        assert CORPORA.get(name).__name__ == name


# --- IEMOCAP ---------------------------------------------------------------------------------------

IEMOCAP_EVALUATION = """% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]

[6.2901 - 8.2357]\tSes01F_impro01_F000\tneu\t[2.5000, 2.5000, 2.5000]
C-E2:\tNeutral;\t()
A-E3:\tval 3; act 2; dom  2;\t()

[10.0100 - 11.3925]\tSes01F_impro01_M000\tang\t[2.0000, 3.5000, 3.5000]
[14.8872 - 18.0175]\tSes01F_impro01_F001\texc\t[4.0000, 3.5000, 3.0000]
[19.2900 - 20.7875]\tSes01F_impro01_M001\tfru\t[2.0000, 3.0000, 3.0000]
[21.3257 - 24.7999]\tSes01F_impro01_M002\txxx\t[2.5000, 2.5000, 2.5000]
"""


def make_iemocap(root: Path) -> Path:
    release = root / "IEMOCAP_full_release"
    s1 = release / "Session1"
    (s1 / "dialog" / "EmoEvaluation" / "Categorical").mkdir(parents=True)
    (s1 / "dialog" / "EmoEvaluation" / "Ses01F_impro01.txt").write_text(IEMOCAP_EVALUATION)
    (s1 / "dialog" / "EmoEvaluation" / "Ses01F_script01_1b.txt").write_text(
        "[1.0000 - 2.0000]\tSes01F_script01_1b_F002\thap\t[4.0000, 3.0000, 3.0000]\n"
    )
    # Per-annotator files in subfolders use another format and must not be read as labels.
    (s1 / "dialog" / "EmoEvaluation" / "Categorical" / "Ses01F_impro01_e1_cat.txt").write_text("Ses01F_impro01_F000 :Anger; ()\n")
    write_wav(s1 / "dialog" / "wav" / "Ses01F_impro01.wav")  # whole dialog: not an utterance
    for utt in ("F000", "M000", "F001", "M001", "M002", "F099"):
        write_wav(s1 / "sentences" / "wav" / "Ses01F_impro01" / f"Ses01F_impro01_{utt}.wav")
    write_wav(s1 / "sentences" / "wav" / "Ses01F_script01_1b" / "Ses01F_script01_1b_F002.wav")
    write_wav(s1 / "sentences" / "wav" / "Ses01F_impro01" / "notes.wav")
    s2 = release / "Session2"
    (s2 / "dialog" / "EmoEvaluation").mkdir(parents=True)
    (s2 / "dialog" / "EmoEvaluation" / "Ses02M_impro03.txt").write_text("[0.5 - 1.5]\tSes02M_impro03_F000\tsad\t[2.0, 2.0, 2.0]\n")
    write_wav(s2 / "sentences" / "wav" / "Ses02M_impro03" / "Ses02M_impro03_F000.wav")
    return release


def test_iemocap_four_classes_speakers_and_sessions(tmp_path):
    release = make_iemocap(tmp_path)
    result = scan("iemocap", release)
    assert result.labels == ["angry", "happy", "sad", "neutral"]
    records = by_name(result.records)
    assert {name: (r.label, r.speaker, r.session) for name, r in records.items()} == {
        "Ses01F_impro01_F000.wav": ("neutral", "Ses01F", "Session1"),
        # The dialog's letter is the marker-wearing actor; the utterance's last part is the speaker.
        "Ses01F_impro01_M000.wav": ("angry", "Ses01M", "Session1"),
        "Ses01F_impro01_F001.wav": ("happy", "Ses01F", "Session1"),  # exc merged into happy
        "Ses01F_script01_1b_F002.wav": ("happy", "Ses01F", "Session1"),
        "Ses02M_impro03_F000.wav": ("sad", "Ses02F", "Session2"),
    }
    assert all(Path(r.path).is_absolute() for r in result.records)
    problems = reasons(result.problems)
    assert problems == {
        "Ses01F_impro01_M001.wav": "label 'frustrated' not in the 4-class set",
        "Ses01F_impro01_M002.wav": "label 'xxx' not in the 4-class set",
        "Ses01F_impro01_F099.wav": "no label for Ses01F_impro01_F099 in Session1/dialog/EmoEvaluation",
        "notes.wav": problems["notes.wav"],
    }
    assert "convention" in problems["notes.wav"]


def test_iemocap_accepts_the_release_parent_and_data_labels(tmp_path):
    make_iemocap(tmp_path)
    result = scan("iemocap", tmp_path, labels=["neutral", "excited", "frustrated"])
    assert result.labels == ["neutral", "excited", "frustrated"]
    assert sorted(r.label for r in result.records) == ["excited", "frustrated", "neutral"]
    assert reasons(result.problems)["Ses01F_impro01_M000.wav"] == "label 'angry' not in data.labels"
    with pytest.raises(DataError, match="'joy' is not a iemocap emotion"):
        scan("iemocap", tmp_path, labels=["joy"])


def test_iemocap_wrong_root_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match="IEMOCAP_full_release"):
        scan("iemocap", tmp_path)


# --- CREMA-D ---------------------------------------------------------------------------------------


def test_crema_d(tmp_path):
    for name in ("1001_DFA_ANG_XX", "1001_IEO_HAP_HI", "1002_TIE_SAD_LO", "1091_WSI_DIS_MD", "1091_ITS_FEA_XX", "1002_MTI_NEU_XX"):
        write_wav(tmp_path / "AudioWAV" / f"{name}.wav")
    write_wav(tmp_path / "AudioWAV" / "1001_DFA_ANG.wav")
    write_wav(tmp_path / "AudioWAV" / "1001_DFA_BOR_XX.wav")
    result = scan("crema_d", tmp_path)
    assert result.labels == ["anger", "disgust", "fear", "happy", "neutral", "sad"]
    records = by_name(result.records)
    assert {n: (r.label, r.speaker, r.session) for n, r in records.items()} == {
        "1001_DFA_ANG_XX.wav": ("anger", "1001", None),
        "1001_IEO_HAP_HI.wav": ("happy", "1001", None),
        "1002_TIE_SAD_LO.wav": ("sad", "1002", None),
        "1091_WSI_DIS_MD.wav": ("disgust", "1091", None),
        "1091_ITS_FEA_XX.wav": ("fear", "1091", None),
        "1002_MTI_NEU_XX.wav": ("neutral", "1002", None),
    }
    problems = reasons(result.problems)
    assert set(problems) == {"1001_DFA_ANG.wav", "1001_DFA_BOR_XX.wav"}
    assert "ActorID_Sentence_Emotion_Level" in problems["1001_DFA_ANG.wav"]
    assert problems["1001_DFA_BOR_XX.wav"] == "unknown CREMA-D emotion code 'BOR'"


# --- RAVDESS ---------------------------------------------------------------------------------------


def test_ravdess_speech_only_eight_classes(tmp_path):
    write_wav(tmp_path / "Actor_12" / "03-01-05-01-02-01-12.wav")
    write_wav(tmp_path / "Actor_12" / "03-01-02-02-01-02-12.wav")
    write_wav(tmp_path / "Actor_01" / "03-01-08-01-01-01-01.wav")
    write_wav(tmp_path / "Actor_01" / "03-02-03-01-01-01-01.wav")  # song
    write_wav(tmp_path / "Actor_01" / "03-01-05-01-02-01-02.wav")  # actor 02 in Actor_01
    write_wav(tmp_path / "Actor_01" / "03-01-05-01.wav")
    result = scan("ravdess", tmp_path)
    assert result.labels == ["neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised"]
    records = by_name(result.records)
    assert {n: (r.label, r.speaker) for n, r in records.items()} == {
        "03-01-05-01-02-01-12.wav": ("angry", "12"),
        "03-01-02-02-01-02-12.wav": ("calm", "12"),
        "03-01-08-01-01-01-01.wav": ("surprised", "01"),
    }
    problems = reasons(result.problems)
    assert problems["03-02-03-01-01-01-01.wav"] == "song (vocal channel 02); only speech (01) is used"
    assert problems["03-01-05-01-02-01-02.wav"] == "actor 02 in the name but the file is in Actor_01"
    assert "convention" in problems["03-01-05-01.wav"]
    assert len(result.problems) == 3


# --- TESS ------------------------------------------------------------------------------------------


def test_tess(tmp_path):
    write_wav(tmp_path / "OAF_angry" / "OAF_back_angry.wav")
    write_wav(tmp_path / "OAF_Pleasant_surprise" / "OAF_bar_ps.wav")
    write_wav(tmp_path / "YAF_fear" / "YAF_dog_fear.wav")
    write_wav(tmp_path / "YAF_disgust" / "YAF_germ_disgust.wav")
    write_wav(tmp_path / "OAF_neutral" / "OA_bite_neutral.wav")  # a real TESS file with a short prefix
    write_wav(tmp_path / "YAF_calm" / "YAF_dog_calm.wav")
    result = scan("tess", tmp_path)
    assert result.labels == ["angry", "disgust", "fear", "happy", "neutral", "surprised", "sad"]
    assert {n: (r.label, r.speaker) for n, r in by_name(result.records).items()} == {
        "OAF_back_angry.wav": ("angry", "OAF"),
        "OAF_bar_ps.wav": ("surprised", "OAF"),
        "YAF_dog_fear.wav": ("fear", "YAF"),
        "YAF_germ_disgust.wav": ("disgust", "YAF"),
    }
    problems = reasons(result.problems)
    assert "convention" in problems["OA_bite_neutral.wav"]
    assert problems["YAF_dog_calm.wav"] == "unknown TESS emotion 'calm'"


# --- EmoDB -----------------------------------------------------------------------------------------


def test_emodb_fake_tree(tmp_path):
    for name in ("03a01Fa", "03a01Wa", "10b09Lb", "16a07Ea", "08a02Ac", "09b03Tb", "12a05Nd"):
        write_wav(tmp_path / "wav" / f"{name}.wav")
    write_wav(tmp_path / "wav" / "03a01Xa.wav")
    write_wav(tmp_path / "wav" / "speaker03.wav")
    result = scan("emodb", tmp_path, labels=["anger", "happiness", "sadness", "neutral"])
    assert result.labels == ["anger", "happiness", "sadness", "neutral"]
    assert {n: (r.label, r.speaker) for n, r in by_name(result.records).items()} == {
        "03a01Fa.wav": ("happiness", "03"),
        "03a01Wa.wav": ("anger", "03"),
        "09b03Tb.wav": ("sadness", "09"),
        "12a05Nd.wav": ("neutral", "12"),
    }
    problems = reasons(result.problems)
    assert problems["10b09Lb.wav"] == "label 'boredom' not in data.labels"
    assert problems["03a01Xa.wav"] == "unknown EmoDB emotion letter 'X'"
    assert "convention" in problems["speaker03.wav"]
    assert len(result.problems) == 5


def test_emodb_clips_directly_in_root(tmp_path):
    write_wav(tmp_path / "03a01Fa.wav")
    result = scan("emodb", tmp_path)
    assert [(r.label, r.speaker) for r in result.records] == [("happiness", "03")]
    assert result.labels == ["anger", "boredom", "disgust", "fear", "happiness", "sadness", "neutral"]


@pytest.mark.emodb
@pytest.mark.skipif(not EMODB.is_dir(), reason="the EmoDB sample copy is not on this machine")
def test_emodb_real_copy():
    result = scan("emodb", EMODB)
    assert len(result.records) == 535
    assert result.problems == []
    assert sorted({r.speaker for r in result.records}) == ["03", "08", "09", "10", "11", "12", "13", "14", "15", "16"]
    # Class counts as the copy's README states them.
    assert collections.Counter(r.label for r in result.records) == {
        "anger": 127,
        "boredom": 81,
        "disgust": 46,
        "fear": 69,
        "happiness": 71,
        "neutral": 79,
        "sadness": 62,
    }


# --- SAVEE -----------------------------------------------------------------------------------------


def test_savee_speaker_folders_and_flat_names(tmp_path):
    write_wav(tmp_path / "AudioData" / "DC" / "a01.wav")
    write_wav(tmp_path / "AudioData" / "JE" / "sa03.wav")
    write_wav(tmp_path / "AudioData" / "KL" / "su15.wav")
    write_wav(tmp_path / "AudioData" / "JK" / "n30.wav")
    write_wav(tmp_path / "ALL" / "DC_h02.wav")
    write_wav(tmp_path / "ALL" / "JK_d07.wav")
    write_wav(tmp_path / "AudioData" / "XX" / "a01.wav")  # no speaker
    write_wav(tmp_path / "AudioData" / "JK" / "z01.wav")
    write_wav(tmp_path / "AudioData" / "JK" / "DC_f01.wav")  # name and folder disagree
    result = scan("savee", tmp_path)
    assert result.labels == ["anger", "disgust", "fear", "happiness", "neutral", "sadness", "surprise"]
    got = sorted((Path(r.path).parent.name, Path(r.path).name, r.label, r.speaker) for r in result.records)
    assert got == [
        ("ALL", "DC_h02.wav", "happiness", "DC"),
        ("ALL", "JK_d07.wav", "disgust", "JK"),
        ("DC", "a01.wav", "anger", "DC"),
        ("JE", "sa03.wav", "sadness", "JE"),
        ("JK", "n30.wav", "neutral", "JK"),
        ("KL", "su15.wav", "surprise", "KL"),
    ]
    problems = sorted(reason for _, reason in result.problems)
    assert len(problems) == 3
    assert any(reason.startswith("no SAVEE speaker") for reason in problems)
    assert any("convention" in reason for reason in problems)
    assert "speaker DC in the name but the file is in JK/" in problems


# --- shared behaviour ------------------------------------------------------------------------------


def test_wrong_corpus_names_the_convention(tmp_path):
    write_wav(tmp_path / "Actor_01" / "03-01-05-01-02-01-01.wav")
    with pytest.raises(DataError, match="none of the 1 audio files follows the emodb naming"):
        scan("emodb", tmp_path)


def test_missing_root_and_speaker_pattern_are_errors(tmp_path):
    with pytest.raises(DataError, match="data folder not found"):
        scan("crema_d", tmp_path / "missing")
    write_wav(tmp_path / "03a01Fa.wav")
    with pytest.raises(ConfigError, match="data.speaker_pattern"):
        scan("emodb", tmp_path, speaker_pattern=r"^(\d\d)")


def test_pipeline_finds_the_adapters(tmp_path):
    from ser_dist.data.pipeline import scan_corpus

    for name in ("1001_DFA_ANG_XX", "1002_DFA_SAD_XX"):
        write_wav(tmp_path / "AudioWAV" / f"{name}.wav")
    result = scan_corpus(Data(corpus="crema_d", root=str(tmp_path), labels=["anger", "sad"]))
    assert [(r.label, r.speaker) for r in result.records] == [("anger", "1001"), ("sad", "1002")]
