"""The Spark session of the Spark backend, built from the ``[spark]`` section.

Defaults keep a local or same-machine run on loopback (driver host and bind address
127.0.0.1 unless ``conf`` says otherwise) and run the executors' Python workers with the
driver's interpreter unless ``spark.pyspark.python`` or ``spark.archives`` ship another.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from recsys.errors import ConfigError
from recsys.pipeline.config import SparkConfig

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

LOOPBACK = "127.0.0.1"


def java_available() -> bool:
    """True when a Java runtime is reachable (JAVA_HOME or ``java`` on the PATH)."""
    home = os.environ.get("JAVA_HOME")
    if home and os.path.exists(os.path.join(home, "bin", "java")):
        return True
    return shutil.which("java") is not None


def require_pyspark() -> None:
    """ConfigError naming the extra to install when pyspark is missing, or Java when absent."""
    try:
        import pyspark  # noqa: F401
    except ModuleNotFoundError:
        raise ConfigError(
            'training.backend = "spark": pyspark is not installed (pip install \'recsys[spark]\')'
        ) from None
    if not java_available():
        raise ConfigError('training.backend = "spark": no Java runtime found (install Java 17 or set JAVA_HOME)')


def session_conf(config: SparkConfig) -> dict[str, str]:
    """The properties the session is built with: loopback defaults, then ``conf`` over them."""
    conf: dict[str, str] = {}
    master = config.master
    if master.startswith(("local", "spark://127.", "spark://localhost")):
        conf["spark.driver.host"] = LOOPBACK
        conf["spark.driver.bindAddress"] = LOOPBACK
    if "spark.archives" not in config.conf:
        conf["spark.pyspark.python"] = sys.executable
        conf["spark.pyspark.driver.python"] = sys.executable
    conf["spark.sql.execution.arrow.pyspark.enabled"] = "true"
    conf["spark.sql.session.timeZone"] = "UTC"
    conf["spark.ui.showConsoleProgress"] = "false"
    for key, value in config.conf.items():
        conf[key] = str(value).lower() if isinstance(value, bool) else str(value)
    return conf


def start_session(config: SparkConfig) -> SparkSession:
    """A SparkSession for ``config`` (an active one with the same master is reused)."""
    require_pyspark()
    from pyspark.sql import SparkSession

    conf = session_conf(config)
    if conf.get("spark.driver.host") == LOOPBACK:
        os.environ.setdefault("SPARK_LOCAL_IP", LOOPBACK)
    if "spark.pyspark.python" in conf:
        os.environ.setdefault("PYSPARK_PYTHON", conf["spark.pyspark.python"])
    builder = SparkSession.builder.master(config.master).appName(config.app_name)
    for key, value in conf.items():
        builder = builder.config(key, value)
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel("WARN")
    return session


@contextmanager
def spark_session(config: SparkConfig, *, stop: bool = True) -> Iterator[SparkSession]:
    """A session for the duration of a job; stopped at the end unless ``stop`` is False
    (tests share one session)."""
    session = start_session(config)
    try:
        yield session
    finally:
        if stop:
            session.stop()
