"""Delta Lake's JVM jars (and the s3a connector's): resolved once from Maven Central, then used from a local cache.

Delta's jars are not on PyPI. Rather than asking Spark's Ivy to resolve ``spark.jars.packages``
at every start (slow, and it needs the network unless Ivy's cache happens to be warm), we walk
the POMs of ``io.delta:delta-spark_<scala>:<version>`` ourselves, download each compile-scope
jar, check its SHA-1 against Maven Central's, and write a small manifest. Later starts read the
manifest and pass plain file paths in ``spark.jars``: an offline machine with a warm cache works.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import urllib.error
import urllib.request
import xml.etree.ElementTree as ET
from pathlib import Path

from omicslake.errors import JarResolutionError

log = logging.getLogger(__name__)

# Supplied by the Spark runtime itself; never downloaded.
_PROVIDED_GROUPS = ("org.scala-lang", "org.apache.spark", "org.apache.hadoop", "org.slf4j")
_NS = {"m": "http://maven.apache.org/POM/4.0.0"}


def default_cache() -> Path:
    """The folder downloaded jars are kept in: $OMICSLAKE_JAR_CACHE, else ~/.cache/omicslake/jars."""
    env = os.environ.get("OMICSLAKE_JAR_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "omicslake" / "jars"


def delta_coordinate(version: str, scala: str = "2.12") -> str:
    """The Maven coordinate of delta-spark ``version`` for Scala ``scala`` (io.delta:delta-spark_<scala>:<version>)."""
    return f"io.delta:delta-spark_{scala}:{version}"


def delta_jars(
    version: str, scala: str = "2.12", cache: Path | None = None, repo: str = "https://repo1.maven.org/maven2"
) -> list[Path]:
    """Local paths of Delta's jars and their runtime dependencies, downloading on first use."""
    cache = cache or default_cache()
    coord = delta_coordinate(version, scala)
    manifest = cache / f"{coord.replace(':', '_')}.json"
    if manifest.exists():
        paths = [cache / name for name in json.loads(manifest.read_text())["jars"]]
        if all(p.exists() for p in paths):
            return paths
    try:
        cache.mkdir(parents=True, exist_ok=True)
        resolved = _resolve(coord, repo, seen=set())
        paths = [_download(c, repo, cache) for c in resolved]
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        raise JarResolutionError(
            f"Delta Lake's jars ({coord}) are not in the cache {cache} and could not be fetched "
            f"from {repo} ({exc}). On a machine with network access run "
            f"`omicslake fetch-jars` (or `python -m omicslake.jars`) once, or copy that cache "
            f"folder here and point OMICSLAKE_JAR_CACHE at it."
        ) from exc
    tmp = manifest.with_suffix(".tmp")
    tmp.write_text(json.dumps({"coordinate": coord, "jars": [p.name for p in paths]}, indent=1))
    tmp.replace(manifest)
    log.info("resolved %s into %d jars under %s", coord, len(paths), cache)
    return paths


# hadoop-aws is built against one AWS SDK bundle; the pairs are in hadoop-project's pom
# (aws-java-sdk.version) of each Hadoop release.
AWS_SDK_FOR_HADOOP = {
    "3.3.4": "1.12.262",
    "3.3.5": "1.12.316",
    "3.3.6": "1.12.367",
}


def spark_hadoop_version() -> str:
    """The Hadoop version inside the installed pyspark (from its hadoop-client-api jar)."""
    import pyspark

    found = sorted((Path(pyspark.__file__).parent / "jars").glob("hadoop-client-api-*.jar"))
    if not found:
        raise JarResolutionError(
            f"no hadoop-client-api-*.jar in {Path(pyspark.__file__).parent / 'jars'}: cannot tell which "
            "hadoop-aws matches this pyspark; on a cluster whose Spark ships its own Hadoop, put "
            "hadoop-aws on its classpath and leave lake.s3a_jars off"
        )
    return found[-1].name[len("hadoop-client-api-") : -len(".jar")]


def s3a_jars(
    hadoop: str | None = None, cache: Path | None = None, repo: str = "https://repo1.maven.org/maven2"
) -> list[Path]:
    """Local paths of hadoop-aws (for the Hadoop inside pyspark) and the AWS SDK bundle it was built
    against: what Spark needs to read and write s3a:// paths. Downloaded once, SHA-1 checked, cached
    like Delta's jars (the manifest makes later starts offline)."""
    cache = cache or default_cache()
    hadoop = hadoop or spark_hadoop_version()
    sdk = AWS_SDK_FOR_HADOOP.get(hadoop)
    if sdk is None:
        raise JarResolutionError(
            f"no known AWS SDK bundle for Hadoop {hadoop} (known: {sorted(AWS_SDK_FOR_HADOOP)}); add the "
            "pair from hadoop-project's pom (aws-java-sdk.version) to omicslake.jars.AWS_SDK_FOR_HADOOP"
        )
    coords = [f"org.apache.hadoop:hadoop-aws:{hadoop}", f"com.amazonaws:aws-java-sdk-bundle:{sdk}"]
    manifest = cache / f"hadoop-aws_{hadoop}.json"
    if manifest.exists():
        paths = [cache / name for name in json.loads(manifest.read_text())["jars"]]
        if all(p.exists() for p in paths):
            return paths
    try:
        cache.mkdir(parents=True, exist_ok=True)
        paths = [_download(c, repo, cache) for c in coords]
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        raise JarResolutionError(
            f"the s3a connector's jars ({', '.join(coords)}) are not in the cache {cache} and could not be "
            f"fetched from {repo} ({exc}). On a machine with network access run `python -m omicslake.jars "
            "--s3a` once, or copy that cache folder here and point OMICSLAKE_JAR_CACHE at it."
        ) from exc
    tmp = manifest.with_suffix(".tmp")
    tmp.write_text(json.dumps({"coordinates": coords, "jars": [p.name for p in paths]}, indent=1))
    tmp.replace(manifest)
    log.info("resolved %s into %s", ", ".join(coords), cache)
    return paths


def _split(coord: str) -> tuple[str, str, str]:
    group, artifact, version = coord.split(":")
    return group, artifact, version


def _url(coord: str, repo: str, ext: str) -> str:
    group, artifact, version = _split(coord)
    return f"{repo}/{group.replace('.', '/')}/{artifact}/{version}/{artifact}-{version}.{ext}"


def _fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=60) as resp:  # noqa: S310 - fixed https repo
        data: bytes = resp.read()
        return data


def _resolve(coord: str, repo: str, seen: set[str]) -> list[str]:
    """coord and its compile/runtime dependencies, depth first, each once."""
    if coord in seen:
        return []
    seen.add(coord)
    pom = ET.fromstring(_fetch(_url(coord, repo, "pom")))
    out = [coord]
    for dep in pom.findall("m:dependencies/m:dependency", _NS):
        group = dep.findtext("m:groupId", "", _NS)
        artifact = dep.findtext("m:artifactId", "", _NS)
        version = dep.findtext("m:version", "", _NS)
        scope = dep.findtext("m:scope", "compile", _NS)
        optional = dep.findtext("m:optional", "false", _NS) == "true"
        if scope not in ("compile", "runtime") or optional or group.startswith(_PROVIDED_GROUPS):
            continue
        if "${" in version or not version:
            raise JarResolutionError(f"{coord}: dependency {group}:{artifact} has no plain version")
        out += _resolve(f"{group}:{artifact}:{version}", repo, seen)
    return out


def _download(coord: str, repo: str, cache: Path) -> Path:
    _, artifact, version = _split(coord)
    target = cache / f"{artifact}-{version}.jar"
    want = _fetch(_url(coord, repo, "jar.sha1")).decode().split()[0].strip()
    if target.exists() and hashlib.sha1(target.read_bytes()).hexdigest() == want:  # noqa: S324
        return target
    data = _fetch(_url(coord, repo, "jar"))
    got = hashlib.sha1(data).hexdigest()  # noqa: S324 - Maven Central publishes SHA-1
    if got != want:
        raise JarResolutionError(f"{coord}: checksum mismatch (got {got}, Maven Central says {want})")
    tmp = target.with_suffix(".part")
    tmp.write_bytes(data)
    tmp.replace(target)
    return target


if __name__ == "__main__":
    import sys

    logging.basicConfig(level=logging.INFO)
    args = [a for a in sys.argv[1:] if a != "--s3a"]
    for p in delta_jars(args[0] if args else "3.3.2"):
        print(p)
    if "--s3a" in sys.argv[1:]:
        for p in s3a_jars():
            print(p)
