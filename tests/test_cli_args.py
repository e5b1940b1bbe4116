"""Every numeric command-line option is range- and finiteness-checked, and bad command lines are one line."""

import pytest

from ser_dist.cli import main


@pytest.mark.parametrize(
    "argv, fragment",
    [
        (["predict", "m", "a.wav", "--batch-size", "0"], "argument --batch-size: 0 must be >= 1"),
        (["predict", "m", "a.wav", "--top-k", "-1"], "argument --top-k: -1 must be >= 1"),
        (["predict", "m", "a.wav", "--window-seconds", "nan"], "argument --window-seconds: nan must be a finite number of seconds > 0"),
        (["predict", "m", "a.wav", "--window-seconds", "inf"], "argument --window-seconds: inf must be a finite number"),
        (["predict", "m", "a.wav", "--hop-seconds", "0"], "argument --hop-seconds: 0 must be a finite number of seconds > 0"),
        (["predict", "m", "a.wav", "--batch-size", "2.5"], "argument --batch-size: '2.5' is not an integer"),
        (["evaluate", "m", "--batch-size", "-3"], "argument --batch-size: -3 must be >= 1"),
        (["make-demo-data", "d", "--speakers", "1"], "argument --speakers: 1 must be >= 2"),
        (["make-demo-data", "d", "--seed", "-1"], "argument --seed: -1 must be >= 0"),
        (["augment", "a", "b", "--ops", "gain", "--copies", "0"], "argument --copies: 0 must be >= 1"),
        (["augment", "a", "b", "--ops", "gain", "--sample-rate", "0"], "argument --sample-rate: 0 must be >= 1000"),
        (["predikt", "m"], "invalid choice: 'predikt'"),
        (["predict"], "the following arguments are required: model"),
    ],
)
def test_bad_command_line_is_one_line(argv, fragment, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ser-dist: error: ") and fragment in lines[0], lines
