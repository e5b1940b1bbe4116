"""The recurrent backbones: padding never reaches the prediction, and the fast masked LSTM equals packed sequences."""

import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from ser_dist.models.recurrent import MaskedLSTM, RecurrentSER, average_frames, reverse_padded


def test_reverse_padded_keeps_padding_at_the_end():
    x = torch.arange(1, 6, dtype=torch.float32).repeat(2, 1).unsqueeze(-1)  # [[1..5], [1..5]]
    out = reverse_padded(x, torch.tensor([5, 3]))[..., 0]
    assert out.tolist() == [[5, 4, 3, 2, 1], [3, 2, 1, 4, 5]]


def _copy_packed_weights(masked: MaskedLSTM, reference: torch.nn.LSTM, layers: int) -> None:
    with torch.no_grad():
        for layer in range(layers):
            for module, suffix in ((masked.forward_layers[layer], f"_l{layer}"), (masked.backward_layers[layer], f"_l{layer}_reverse")):
                for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                    getattr(module, f"{name}_l0").copy_(getattr(reference, name + suffix))


def test_masked_lstm_equals_packed_bidirectional_lstm_and_ignores_padding():
    torch.manual_seed(0)
    masked = MaskedLSTM(5, 7, num_layers=2, bidirectional=True, dropout=0.0)
    reference = torch.nn.LSTM(5, 7, num_layers=2, bidirectional=True, batch_first=True)
    _copy_packed_weights(masked, reference, 2)
    x = torch.randn(3, 9, 5)
    lengths = torch.tensor([9, 4, 6])
    x[1, 4:] = 100.0  # garbage in the padding
    x[2, 6:] = -50.0
    outputs, final = masked(x, lengths)
    packed, (h_n, _) = reference(pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False))
    padded, _ = pad_packed_sequence(packed, batch_first=True)
    valid = (torch.arange(9)[None, :] < lengths[:, None]).unsqueeze(-1)
    torch.testing.assert_close(outputs * valid, padded * valid, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(final, torch.cat([h_n[-2], h_n[-1]], dim=-1), atol=1e-6, rtol=1e-5)


def test_average_frames_pools_valid_frames_only():
    x = torch.arange(1, 8, dtype=torch.float32).repeat(2, 1).unsqueeze(-1)  # [[1..7], [1..7]]
    x[1, 5:] = 1000.0  # padding of the 5-frame row
    pooled, frames = average_frames(x, torch.tensor([7, 5]), 3)
    assert frames.tolist() == [3, 2]
    assert pooled[0, :, 0].tolist() == [2.0, 5.0, 7.0]  # (1+2+3)/3, (4+5+6)/3, then the lone 7th frame
    assert pooled[1, :2, 0].tolist() == [2.0, 4.5]  # the second group holds 2 valid frames: (4+5)/2
    same, same_frames = average_frames(x, torch.tensor([7, 5]), 1)
    assert same is x and same_frames.tolist() == [7, 5]


@pytest.mark.parametrize("head", ["last", "mean", "attentive_stats"])
@pytest.mark.parametrize("frame_stride", [1, 3])
def test_prediction_does_not_depend_on_padding_or_batch_mates(head, frame_stride):
    torch.manual_seed(0)
    for bidirectional, layers in ((True, 3), (False, 2)):
        model = RecurrentSER(
            4, hidden_size=8, embedding_size=8, num_layers=layers, bidirectional=bidirectional, head=head, frame_stride=frame_stride
        ).eval()
        short = torch.randn(8000) * 0.1
        alone = model(short[None], torch.tensor([8000])).logits
        batch = torch.randn(2, 16000) * 0.1
        batch[0, :8000] = short
        batch[0, 8000:] = 0.5  # the padding region holds anything
        together = model(batch, torch.tensor([8000, 16000])).logits[:1]
        torch.testing.assert_close(alone, together, atol=1e-5, rtol=1e-4)


def test_global_normalisation_learns_training_statistics_and_ignores_padding():
    from ser_dist.models.features import GlobalNormalize

    torch.manual_seed(0)
    norm = GlobalNormalize(3)
    frames = [torch.randn(n, 3) * torch.tensor([1.0, 2.0, 5.0]) + torch.tensor([0.0, -3.0, 10.0]) for n in (7, 4, 9, 5)]
    for first in (0, 2):  # two batches, padded with garbage
        batch = torch.full((2, 9, 3), 99.0)
        for row, clip in enumerate(frames[first : first + 2]):
            batch[row, : len(clip)] = clip
        norm.train()(batch, torch.tensor([len(frames[first]), len(frames[first + 1])]))
    every_frame = torch.cat(frames).double()
    torch.testing.assert_close(norm.mean, every_frame.mean(0))
    torch.testing.assert_close(norm.sum_squares / norm.count, every_frame.var(0, unbiased=False))
    frozen = norm.mean.clone()
    out = norm.eval()(torch.full((1, 4, 3), 7.0), torch.tensor([2]))
    torch.testing.assert_close(norm.mean, frozen)  # eval mode reads, never updates
    assert torch.all(out[0, 2:] == 0)


def test_feature_norm_is_a_checked_choice():
    from ser_dist.config import ConfigError, Data, Experiment, cli

    assert cli(Experiment(data=Data(root=".")), ["model.feature_norm=global"]).model.feature_norm == "global"
    with pytest.raises(ConfigError, match="model.feature_norm"):
        cli(Experiment(data=Data(root=".")), ["model.feature_norm=batch"])


def _built(backbone: str, *overrides: str):
    from ser_dist.config import Data, Experiment, cli
    from ser_dist.models import build_model

    return build_model(cli(Experiment(data=Data(root=".")), [f"model.backbone={backbone}", *overrides]), num_classes=4)


def test_head_auto_keeps_the_seeds_final_states_and_pooling_heads_use_every_valid_frame():
    torch.manual_seed(0)
    assert _built("bilstm", "model.hidden_size=8", "model.embedding_size=8").head == "last"
    model = _built("lstm", "model.head=mean", "model.hidden_size=8", "model.embedding_size=8").eval()
    waveform = torch.randn(1, 16000) * 0.1
    features, frames = model.frontend(waveform, torch.tensor([16000]))
    outputs, _ = model.lstm(features, frames)
    expected = model.classifier(model.dense(outputs[:, : int(frames[0])].mean(1)))
    torch.testing.assert_close(model(waveform, torch.tensor([16000])).logits, expected)
    assert _built("bilstm", "model.head=attentive_stats", "model.hidden_size=8").dense[0].in_features == 2 * 16  # mean and std of 2 x 8


@pytest.mark.parametrize(
    ("backbone", "head"), [("bilstm", "weighted_layers"), ("hubert_tiny_random", "last"), ("vggish", "attentive_stats")]
)
def test_a_head_the_backbone_cannot_take_fails_before_training(backbone, head):
    from ser_dist.errors import ConfigError

    with pytest.raises(ConfigError, match=f"model.head={head!r} does not apply to .*use"):
        _built(backbone, f"model.head={head}", "model.pretrained=false")


def test_num_layers_sets_the_depth_of_the_recurrent_stack_only():
    from ser_dist.errors import ConfigError

    assert len(_built("bilstm", "model.hidden_size=8").lstm.forward_layers) == 3  # the seed's 2 + 1
    assert len(_built("lstm", "model.hidden_size=8").lstm.forward_layers) == 2
    two = _built("bilstm", "model.hidden_size=8", "model.num_layers=2").lstm
    assert len(two.forward_layers) == len(two.backward_layers) == 2
    assert len(_built("lstm", "model.hidden_size=8", "model.num_layers=1").lstm.forward_layers) == 1
    with pytest.raises(ConfigError, match=r"model.num_layers=0 is out of range: it must be in \[1, inf\)"):
        _built("bilstm", "model.num_layers=0")
    for backbone in ("vggish", "hubert_tiny_random"):
        with pytest.raises(ConfigError, match=f"model.num_layers is for the bilstm and lstm backbones, not {backbone}"):
            _built(backbone, "model.num_layers=2", "model.pretrained=false")


def test_frame_stride_shortens_the_recurrence_and_is_for_recurrent_backbones_only():
    from ser_dist.errors import ConfigError

    torch.manual_seed(0)
    model = _built("bilstm", "model.hidden_size=8", "model.embedding_size=8", "model.frame_stride=3", "model.head=mean").eval()
    waveform = torch.randn(1, 16000) * 0.1
    features, frames = model.frontend(waveform, torch.tensor([16000]))
    steps = -(-int(frames[0]) // 3)
    outputs, _ = model.lstm(*average_frames(features, frames, 3))
    assert outputs.shape[1] == -(-features.shape[1] // 3) and steps < int(frames[0])
    expected = model.classifier(model.dense(outputs[:, :steps].mean(1)))
    torch.testing.assert_close(model(waveform, torch.tensor([16000])).logits, expected)
    with pytest.raises(ConfigError, match=r"model.frame_stride=0 is out of range: it must be in \[1, inf\)"):
        _built("bilstm", "model.frame_stride=0")
    for backbone in ("vggish", "hubert_tiny_random"):
        with pytest.raises(ConfigError, match=f"model.frame_stride is for the bilstm and lstm backbones, not {backbone}"):
            _built(backbone, "model.frame_stride=3", "model.pretrained=false")


def test_mfcc_of_a_quiet_clip_do_not_change_beside_a_loud_one():
    """torchaudio's MFCC floors the dB values 80 dB below one peak over the whole batch, so a clip with digital
    silence had other features beside a loud clip than alone (445 cepstral units apart here); the front end takes
    each clip's floor from its own valid frames, so a clip is featurised the same in any batch."""
    import torch

    from ser_dist.models.features import MFCCFrontend

    frontend = MFCCFrontend()
    generator = torch.Generator().manual_seed(0)
    quiet = torch.cat([torch.zeros(8000), 1e-4 * torch.randn(8000, generator=generator), torch.zeros(4000)])[None]
    loud = torch.randn(1, 26000, generator=generator)
    batch = torch.zeros(2, 26000)
    batch[0, :20000], batch[1] = quiet[0], loud[0]
    alone, frames = frontend(quiet, torch.tensor([20000]))
    together, both = frontend(batch, torch.tensor([20000, 26000]))
    assert int(frames[0]) == int(both[0]) and frames[0] > 100
    torch.testing.assert_close(alone[0, : frames[0]], together[0, : frames[0]], atol=1e-5, rtol=0)
    assert (frontend.mfcc(quiet)[0] - frontend.mfcc(batch)[0, :, : alone.shape[1]]).abs().max() > 100  # torchaudio's own does differ
    torch.testing.assert_close(frontend.cepstra(loud, torch.tensor([26000])), frontend.mfcc(loud), atol=1e-5, rtol=0)  # alone: torchaudio's
