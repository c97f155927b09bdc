"""A zoo checkpoint rebuilds the same function: the options its weights do not show are recorded by ``save``."""

import torch

from lmech.models import zoo
from lmech.models.cnn import SmallCNN
from lmech.models.patch_transformer import PatchTransformer


def test_a_pooled_cnn_round_trips_through_a_checkpoint(tmp_path):
    # the pools have no parameters: rebuilt from its weights alone the CNN loads strictly and computes
    # another function, so the checkpoint must carry pool (the independent reference: the saved model)
    model = SmallCNN(width=8, depth=3, pool=True, activation="tanh", seed=1).eval()
    x = torch.randn(5, 64, generator=torch.Generator().manual_seed(0))
    path = zoo.save("cnn", model, tmp_path / "cnn.pt")
    loaded, name = zoo.load_model(path)
    assert name == "cnn" and loaded.pool and loaded.activation == "tanh"
    torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=0)
    # counterexample: the same weights without the recorded options compute something else
    bare = zoo.build_from_state_dict("cnn", model.state_dict(), activation="tanh")
    assert not torch.allclose(bare(x), model(x), atol=1e-3)


def test_options_given_to_save_take_precedence_and_heads_are_recorded(tmp_path):
    model = PatchTransformer(width=16, depth=1, patch=4, image_size=8, num_classes=3, n_head=4).eval()
    assert zoo.architecture_options("transformer", model) == {"n_head": 4}
    path = zoo.save("cnn", SmallCNN(width=4, depth=2), tmp_path / "c.pt", pool=False, image_size=8)
    assert torch.load(path, weights_only=True)["options"]["pool"] is False
    x = torch.randn(2, 64, generator=torch.Generator().manual_seed(1))
    loaded, _ = zoo.load_model(zoo.save("transformer", model, tmp_path / "t.pt"))
    torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=0)
