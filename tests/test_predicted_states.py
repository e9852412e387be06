"""Distance training on predicted frames: the frames line up with their steps, the batches mix."""
import numpy as np
import pytest

from mbold_tf.data import pipelines
from mbold_tf.training import predicted_frames
from tests.test_distance import chain_arrays


class _WindowPredictor:
    """Frame k of a prediction is filled with k + 1 (its depth); records the actions it got."""
    context, horizon = 1, 4

    def __init__(self):
        self.calls = []

    def predict(self, frames, actions):
        assert frames.shape[1:] == (1, 64, 64, 3) and frames.dtype == np.uint8
        self.calls.append((frames, actions))
        depth = np.arange(1, self.horizon + 1, dtype=np.float32)[None, :, None, None, None]
        return np.broadcast_to(depth / 255.0, (len(frames), self.horizon, 64, 64, 3))


def test_predicted_images_follow_the_windows_of_each_episode():
    arrays = chain_arrays(num_episodes=5, length=10)
    predictor = _WindowPredictor()
    out = predicted_frames.predicted_images(arrays, predictor, batch_size=4)
    assert out.shape == arrays.images.shape and out.dtype == np.uint8
    # length 10, horizon 4: windows from steps 0, 4, 8; step t is predicted at depth (t-1) % 4 + 1
    depth = out.reshape(5, 10, -1)[:, :, 0]
    np.testing.assert_array_equal(depth[:, 1:], np.tile([1, 2, 3, 4, 1, 2, 3, 4, 1], (5, 1)))
    np.testing.assert_array_equal(out[arrays.episode_start], arrays.images[arrays.episode_start])
    # every window got its real context frame and its recorded actions, zero-padded
    frames = np.concatenate([f for f, _ in predictor.calls])
    actions = np.concatenate([a for _, a in predictor.calls])
    assert len(frames) == 15
    np.testing.assert_array_equal(frames[2, 0], arrays.images[8])           # episode 0, step 8
    np.testing.assert_array_equal(actions[2, :1], arrays.actions[8:9])
    np.testing.assert_array_equal(actions[2, 1:], 0.0)
    np.testing.assert_array_equal(actions[4, :4], arrays.actions[14:18])    # episode 1, step 4


def test_distance_batches_read_states_from_predicted_frames():
    arrays = chain_arrays(num_episodes=20, length=10)
    marked = np.full_like(arrays.images, 7)     # stand-in predicted frames, all pixels 7
    real = arrays.images.reshape(len(arrays.images), -1)

    def batch(fraction):
        ds = pipelines.distance_dataset(arrays, batch_size=256, negatives_key="none",
                                        state_images=marked, state_image_fraction=fraction)
        return next(iter(ds))

    b = batch(0.5)
    obs = b["observation"].numpy().reshape(256, -1)
    nxt = b["next_observation"].numpy().reshape(256, -1)
    from_pred = (obs == 7).all(axis=1)
    assert 0.35 < from_pred.mean() < 0.65, from_pred.mean()
    np.testing.assert_array_equal((nxt == 7).all(axis=1), from_pred)   # s and s' from one source
    goals = b["goal"].numpy().reshape(256, -1)
    assert not (goals == 7).all(axis=1).any()                           # goals stay real frames
    assert all((row == real).all(axis=1).any() for row in obs[~from_pred][:20])
    assert not (batch(0.0)["observation"].numpy() == 7).all(axis=(1, 2, 3)).any()
    with pytest.raises(ValueError, match="must match the dataset's images"):
        pipelines.distance_dataset(arrays, negatives_key="none", state_images=marked[:-1],
                                   state_image_fraction=0.5)
