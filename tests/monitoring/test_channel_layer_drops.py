"""Messages the Redis channel layer drops for a full channel are counted."""

import uuid

import pytest
from channels_redis.core import RedisChannelLayer
from django.conf import settings

from monitoring.metrics import CHANNEL_LAYER_DROPPED

pytestmark = pytest.mark.redis


async def test_group_send_to_a_full_channel_increments_the_drop_counter():
    layer = RedisChannelLayer(hosts=[settings.REDIS_URL], capacity=1, prefix=f"test-drops-{uuid.uuid4().hex[:8]}")
    channel = await layer.new_channel()
    await layer.group_add("drops", channel)
    before = CHANNEL_LAYER_DROPPED._value.get()

    for number in range(3):
        await layer.group_send("drops", {"type": "test.message", "n": number})

    assert CHANNEL_LAYER_DROPPED._value.get() - before == 2
    assert (await layer.receive(channel))["n"] == 0
    await layer.flush()
