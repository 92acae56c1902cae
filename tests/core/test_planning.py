import pytest

from synthvision.core.errors import ConfigError
from synthvision.core.planning import ShardPlan, plan_from_prompts, shard_name


def make_plan(shard_size=4, images_per_class=5, seed=0):
    # class 0 has prompts 0 and 2, class 1 has prompt 1
    return plan_from_prompts(
        [0, 1, 0], num_classes=2, images_per_class=images_per_class, shard_size=shard_size, seed=seed
    )


def test_plan_covers_every_image_once_with_interleaved_classes():
    plan = make_plan()
    assert (plan.num_images, plan.num_shards) == (10, 3)
    samples = [s for i in range(plan.num_shards) for s in plan.shard(i).samples]
    assert [len(plan.shard(i).samples) for i in range(3)] == [4, 4, 2]
    assert len({s.key for s in samples}) == 10
    assert [s.class_id for s in samples] == [0, 1] * 5
    # class 0 alternates its two prompts, class 1 always uses its only one
    assert [s.prompt_id for s in samples if s.class_id == 0] == [0, 2, 0, 2, 0]
    assert {s.prompt_id for s in samples if s.class_id == 1} == {1}


def test_images_do_not_depend_on_shard_size_and_seeds_on_the_seed():
    small, large = make_plan(shard_size=2), make_plan(shard_size=10)
    flat_small = [s for i in range(small.num_shards) for s in small.shard(i).samples]
    assert flat_small == list(large.shard(0).samples)
    other_seed = make_plan(seed=1)
    assert [s.seed for s in other_seed.shard(0).samples] != [s.seed for s in make_plan().shard(0).samples]
    assert len({s.seed for s in flat_small}) == 10


def test_spec_hash_is_deterministic_and_content_sensitive():
    assert make_plan().shard(1).spec_hash == make_plan().shard(1).spec_hash
    assert make_plan().shard(1).spec_hash != make_plan(seed=3).shard(1).spec_hash
    assert make_plan().shard(1).name == shard_name(1) == "shard-00001"


def test_a_million_image_plan_holds_no_per_image_state():
    plan = ShardPlan(
        prompt_ids_by_class=tuple((c,) for c in range(1000)), images_per_class=1000, shard_size=1000, seed=0
    )
    assert plan.num_shards == 1000
    last = plan.shard(999)
    assert last.samples[-1].key == f"{999_999:010d}"
    # what it holds grows with the classes and top-up rounds, never with the images
    assert max(len(value) for value in vars(plan).values() if hasattr(value, "__len__")) == plan.num_classes


def test_plan_errors():
    with pytest.raises(ConfigError, match=r"shards.shard_size \(11\) is larger than the run \(10 images"):
        make_plan(shard_size=11)
    with pytest.raises(ConfigError, match="class 1 has no prompts"):
        plan_from_prompts([0], num_classes=2, images_per_class=1, shard_size=1, seed=0)
    with pytest.raises(IndexError):
        make_plan().shard(3)


def test_top_up_rounds_deal_their_classes_continue_keys_prompts_and_seeds_and_start_their_own_shards():
    base = make_plan()  # 2 classes x 5 images in shards of 4, 4 and 2
    plan = ShardPlan(base.prompt_ids_by_class, 5, 4, 0, top_ups=((3, 1), (0, 2)))
    assert (plan.num_images, plan.num_shards) == (16, 5)
    assert [plan.shard(i) for i in range(3)] == [base.shard(i) for i in range(3)]  # the first round unchanged
    round_1, round_2 = plan.shard(3).samples, plan.shard(4).samples
    assert [s.key for s in round_1 + round_2] == [f"{g:010d}" for g in range(10, 16)]
    # round 1 deals class 0, class 1, then class 0 twice; class 0's 6th to 8th images cycle on from
    # prompt 2 (its 5th used prompt 0), class 1 has only prompt 1
    assert [(s.class_id, s.prompt_id) for s in round_1] == [(0, 2), (1, 1), (0, 0), (0, 2)]
    assert [(s.class_id, s.prompt_id) for s in round_2] == [(1, 1), (1, 1)]
    seeds = [plan.sample(g).seed for g in range(16)]
    assert len(set(seeds)) == 16  # a top-up image never repeats an earlier image's noise
    assert seeds == [
        ShardPlan(base.prompt_ids_by_class, 5, 4, 0, top_ups=((3, 1), (0, 2))).sample(g).seed for g in range(16)
    ]


def test_a_round_s_real_guidance_shots_continue_each_class_s_cycle():
    plan = ShardPlan(((0,), (1,)), images_per_class=3, shard_size=6, seed=0, references_per_class=2, top_ups=((2, 1),))
    assert [(s.class_id, s.reference) for s in plan.shard(1).samples] == [(0, 1), (1, 1), (0, 0)]


def test_a_round_without_images_or_with_the_wrong_classes_is_refused():
    for top_ups in (((0, 0),), ((1,),), ((-1, 2),)):
        with pytest.raises(ConfigError, match="top-up round 1 asks for"):
            ShardPlan(((0,), (1,)), images_per_class=3, shard_size=6, seed=0, top_ups=top_ups)
