"""Block scenes: renders of a push goal's start scene with the moved block placed four ways."""
import numpy as np
import pytest

from mbold_tf.envs import goals
from mbold_tf.eval import block_scenes
from mbold_tf.models import baselines


@pytest.fixture(scope="module")
def scenes():
    goal_set = goals.generate_goal_set("push1", num_goals=3, seed=0)
    return goal_set, block_scenes.scene_images(goal_set)


def test_the_moved_block_is_placed_as_each_scene_says(scenes):
    goal_set, images = scenes
    for name in block_scenes.SCENES:
        assert images[name].shape == (3, 64, 64, 3) and images[name].dtype == np.uint8
    xy = images["block_xy"]
    for i in range(3):
        moved = int(goal_set.moved_object[i])
        np.testing.assert_allclose(xy[i, 0], goal_set.goal_privileged(i)["block_pos"][moved, :2],
                                   atol=1e-6)
        # far lies past the goal, on the table
        start, goal, far = xy[i, 1], xy[i, 0], xy[i, 2]
        assert np.linalg.norm(far - start) > np.linalg.norm(goal - start)
        assert block_scenes.TABLE_XY[0][0] <= far[0] <= block_scenes.TABLE_XY[0][1]
    # Removing the block changes the picture; the four scenes differ from each other.
    for a in block_scenes.SCENES:
        for b in block_scenes.SCENES:
            if a < b:
                assert (images[a] != images[b]).any(axis=(1, 2, 3)).all(), (a, b)


def test_pixel_distance_ranks_the_block_at_its_goal_first(scenes):
    _, images = scenes
    out = block_scenes.scene_distances(baselines.PixelDistance(), images)
    assert out["goals"] == 3
    assert out["closer"]["at_goal<start"] == 1.0 and out["closer"]["at_goal<far"] == 1.0
    d = {k: np.array(v) for k, v in out["per_goal"].items()}
    assert out["closer"]["removed<start"] == pytest.approx(np.mean(d["removed"] < d["start"]))
    assert out["mean"]["far"] == pytest.approx(d["far"].mean(), rel=1e-2)


def test_block_scenes_need_a_push_task():
    reach = goals.generate_goal_set("reach", num_goals=1, seed=0)
    with pytest.raises(ValueError, match="push task.*'reach'"):
        block_scenes.scene_images(reach)
