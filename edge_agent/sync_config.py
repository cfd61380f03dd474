"""The ``[sync]`` section: where the agent sends its reads, and how hard it pushes.

The broker settings (host, TLS, credentials) are the same as the hub's
(:class:`protocols.broker_settings.BrokerSettings`); the user name defaults to
the collector id, which is what the hub's generated ACL expects. The rest
trades latency for efficiency and bounds what is in flight.

Example::

    [sync]
    host = "mqtt.utility.example"
    tls = true
    ca_file = "ca.pem"
    password_file = "mqtt.password"
    batch_size = 500       # reads per MQTT message
    linger_s = 2           # wait this long for a batch to fill before sending it part-full
    window = 4             # batches sent and not yet acked by the hub
    ack_timeout_s = 30     # resend everything unacked when the hub stays silent this long
"""

from __future__ import annotations

from pydantic import Field, model_validator

from protocols.batch import MAX_BATCH_READS
from protocols.broker_settings import BrokerSettings


class SyncSection(BrokerSettings):
    batch_size: int = Field(default=500, ge=1, le=MAX_BATCH_READS)
    linger_s: float = Field(default=2.0, ge=0)
    window: int = Field(default=4, ge=1, le=1000)
    ack_timeout_s: float = Field(default=30.0, gt=0)
    connect_timeout_s: float = Field(default=15.0, gt=0)
    backoff_min_s: float = Field(default=1.0, gt=0)
    backoff_max_s: float = Field(default=120.0, gt=0)
    status_interval_s: float = Field(default=60.0, gt=0)

    @model_validator(mode="after")
    def _backoff_range(self) -> SyncSection:
        if self.backoff_max_s < self.backoff_min_s:
            raise ValueError("backoff_max_s must not be below backoff_min_s")
        return self
