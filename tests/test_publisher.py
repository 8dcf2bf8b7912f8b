"""The gateway's publishing connection (dispatch output) against a real Mosquitto: a burst is
sent at once and acknowledged in order; with the broker away nothing counts as delivered."""

from __future__ import annotations

from gateway.ingest import Publisher
from tests.conftest import Subscriber
from tests.services import Broker, wait_for


def test_burst_arrives_in_order_and_is_acknowledged(broker: Broker) -> None:
    sub = Subscriber(broker.url, "test/publisher/burst/#")
    publisher = Publisher(broker.url, "test-publisher-burst")
    publisher.start()
    try:
        wait_for(lambda: publisher.connected)
        messages = [(f"test/publisher/burst/{n % 3}", str(n).encode(), False) for n in range(200)]
        assert publisher.publish_in_order(messages, wait_s=10) == 200
        wait_for(lambda: len(sub.messages) == 200)
        assert [int(payload) for _topic, payload in sub.messages] == list(range(200))
    finally:
        publisher.close()
        sub.close()


def test_nothing_counts_as_delivered_while_the_broker_is_away(own_broker: Broker) -> None:
    publisher = Publisher(own_broker.url, "test-publisher-away")
    publisher.start()
    try:
        wait_for(lambda: publisher.connected)
        own_broker.stop()
        wait_for(lambda: not publisher.connected)
        assert publisher.publish_in_order([("test/publisher/away", b"1", False)], wait_s=1) == 0
    finally:
        publisher.close(timeout=0.1)
