"""One local[2] SparkSession for the Spark tests; they skip, saying why, without Java or pyspark."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

from recsys.spark.load import spark_available_reason

SKIP_REASON = spark_available_reason()
TEST_CONF: dict[str, str | int | float | bool] = {
    "spark.ui.enabled": False,
    "spark.sql.shuffle.partitions": 4,
    "spark.default.parallelism": 2,
}


@pytest.fixture(scope="session")
def spark() -> Iterator[Any]:
    if SKIP_REASON:
        pytest.skip(SKIP_REASON)
    from recsys.pipeline.config import SparkConfig
    from recsys.spark.session import start_session

    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    session = start_session(SparkConfig(master="local[2]", app_name="recsys-tests", conf=TEST_CONF))
    yield session
    session.stop()
