"""VCF reading through Hail: container detection, header checks, record rules, Delta rows.

Checks happen at three depths, each naming the file (and the line when it is knowable):

1. The container (``sniff``): BGZF vs plain gzip vs text. Plain gzip cannot be split, so it is
   refused unless ``allow_plain_gzip`` (then Hail reads it on one core).
2. The header (``check_header``, plain Python, reads only the header): file format line,
   duplicate sample ids, Flag fields with a Number other than 0; and (one light Hail pass over
   the text) INFO keys used by records but not declared, which Hail would silently drop.
3. Records, in Hail, in the same pass that converts them (``record_rules``): invalid bases,
   too many alleles, AD of the wrong length, negative or non-finite QUAL, NaN in FORMAT
   floats. Such records are kept in bronze with
   ``_invalid_rule`` set and listed in ``quarantine.vcf_variants``.

A record Hail cannot parse at all stops the file with an ``InputError`` carrying Hail's own
reason, instead of a JVM stack trace.
"""

from __future__ import annotations

import gzip
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hail as hl
from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from omicslake.errors import InputError

_VALID_ALLELE = r"^([ACGTNacgtn]+|\*|<[^<>]+>|[ACGTNacgtn]*[\[\]].*|\.)$"


@dataclass(frozen=True)
class Header:
    """What ``check_header`` read: the sample ids in #CHROM order, the declared INFO and FORMAT fields
    (id -> (Number, Type)) and the number of header lines."""

    samples: list[str]
    info: dict[str, tuple[str, str]]  # id -> (Number, Type)
    fmt: dict[str, tuple[str, str]]
    lines: int  # header lines, so record k is on line lines + k


def sniff(path: Path) -> str:
    """'bgzf', 'gzip' or 'text'."""
    with path.open("rb") as f:
        head = f.read(18)
    if head[:2] != b"\x1f\x8b":
        return "text"
    # BGZF: gzip with FEXTRA, and an extra subfield 'BC' (SAM/BAM spec, section 4.1).
    if len(head) >= 14 and head[3] & 4 and head[12:14] == b"BC":
        return "bgzf"
    return "gzip"


_BGZF_EOF = bytes.fromhex("1f8b08040000000000ff0600424302001b0003000000000000000000")


def check_container(path: Path, kind: str) -> None:
    """Refuse (InputError naming the file, the byte offset and what to do) a file whose compression
    is broken before Hail reads it: a .gz/.bgz name without the gzip magic at byte 0 (stray bytes
    before it), a BGZF file cut inside a block or without the end-of-file block (truncated in
    transfer). Walks the BGZF block headers only (18 bytes a block), not the data."""
    name = path.name.lower()
    if kind == "text" and name.endswith((".gz", ".bgz", ".bgzf")):
        with path.open("rb") as f:
            head = f.read(4096)
        at = head.find(b"\x1f\x8b")
        if at > 0:
            raise InputError(
                f"{path}: {at} stray byte(s) before the gzip magic (1f 8b) at byte 0; the file was damaged in "
                "transfer or prefixed by a tool. Re-export or re-transfer it (or strip the bytes: `tail -c +"
                f"{at + 1} {path.name} > fixed.vcf.bgz`)"
            )
        raise InputError(
            f"{path}: named {path.suffix} but not gzip-compressed (no 1f 8b magic); check what the file is"
        )
    if kind != "bgzf":
        return
    size = path.stat().st_size
    offset = block = 0
    with path.open("rb") as f:
        while offset < size:
            f.seek(offset)
            head = f.read(18)
            if len(head) < 18 or head[:2] != b"\x1f\x8b" or head[12:14] != b"BC":
                raise InputError(
                    f"{path}: BGZF block {block + 1} at byte {offset} is cut or damaged (the file is truncated or "
                    "corrupt). Re-transfer it, or recompress the original with `bgzip`"
                )
            bsize = int.from_bytes(head[16:18], "little") + 1
            if offset + bsize > size:
                raise InputError(
                    f"{path}: truncated: BGZF block {block + 1} at byte {offset} needs {bsize} bytes but the file "
                    f"ends after {size - offset}. Re-transfer the file"
                )
            offset += bsize
            block += 1
        f.seek(max(0, size - 28))
        if f.read(28) != _BGZF_EOF:
            raise InputError(
                f"{path}: truncated: no BGZF end-of-file block after {block} block(s) (the file was cut at a block "
                "boundary). Re-transfer the file"
            )


def _open_text(path: Path, kind: str) -> Any:
    return gzip.open(path, "rt", errors="replace") if kind != "text" else path.open("rt", errors="replace")


_RESERVED_FORMAT = {"AD": ("R", "Integer"), "DP": ("1", "Integer"), "GQ": ("1", "Integer"), "GT": ("1", "String")}
_META = re.compile(r"^##(INFO|FORMAT)=<ID=([^,>]+),Number=([^,>]+),Type=([^,>]+)")


def check_header(path: Path, kind: str) -> Header:
    """Parse and check the header; InputError names the file and line of the first problem."""
    info: dict[str, tuple[str, str]] = {}
    fmt: dict[str, tuple[str, str]] = {}
    samples: list[str] | None = None
    n = 0
    with _open_text(path, kind) as f:
        for n, line in enumerate(f, 1):
            line = line.rstrip("\n")
            if n == 1 and not line.startswith("##fileformat=VCF"):
                raise InputError(f"{path}: line 1 is not '##fileformat=VCFv4.x': this is not a VCF file")
            if line.startswith("##"):
                m = _META.match(line)
                if m:
                    kind_, fid, number, typ = m.groups()
                    if typ == "Flag" and number != "0":
                        raise InputError(
                            f"{path}: line {n}: {kind_} field {fid} is Type=Flag with Number={number}; "
                            "a Flag must have Number=0 (VCF 4.3, section 1.4.2). Fix the header line and rerun."
                        )
                    want = _RESERVED_FORMAT.get(fid) if kind_ == "FORMAT" else None
                    if want and (number, typ) != want and not (fid == "AD" and number == "."):
                        raise InputError(
                            f"{path}: line {n}: FORMAT {fid} is declared Number={number},Type={typ} but the VCF "
                            f"specification reserves {fid} as Number={want[0]},Type={want[1]}; its values cannot be "
                            "read as the standard field. Fix the header line (`bcftools reheader -h`) and rerun."
                        )
                    (info if kind_ == "INFO" else fmt)[fid] = (number, typ)
                continue
            if line.startswith("#CHROM"):
                cols = line.split("\t")
                samples = cols[9:]
                seen: dict[str, int] = {}
                dups = []
                for s in samples:
                    seen[s] = seen.get(s, 0) + 1
                    if seen[s] == 2:
                        dups.append(s)
                if dups:
                    raise InputError(
                        f"{path}: line {n}: sample id(s) {dups[:10]} appear more than once in the #CHROM line; "
                        "sample ids must be unique: rename them (e.g. `bcftools reheader -s`) and rerun."
                    )
                break
            raise InputError(f"{path}: line {n}: expected a header line (## or #CHROM) before the records")
    if samples is None:
        raise InputError(f"{path}: no #CHROM header line found (read {n} lines): the file is truncated or not a VCF")
    return Header(samples, info, fmt, n)


def import_vcf(
    path: Path, kind: str, reference: str | None, recode: dict[str, str], min_partitions: int
) -> hl.MatrixTable:
    """The VCF as a Hail MatrixTable: ``kind`` from ``sniff`` (bgzf read in parallel, plain gzip forced
    through on one core), ``reference`` a Hail reference genome name or None, ``recode`` contig renames
    (empty: none), at least ``min_partitions`` partitions, missing array elements allowed."""
    return hl.import_vcf(
        str(path),
        reference_genome=reference,
        contig_recoding=recode or None,
        force_bgz=kind == "bgzf",
        force=kind == "gzip",
        array_elements_required=False,
        min_partitions=min_partitions,
    )


_BED_MAGIC = b"\x6c\x1b"


def _plink_text(path: Path, columns: int, what: str, fix: str) -> list[list[str]]:
    """The whitespace-separated fields of a .bim or .fam, each line checked to have ``columns``
    fields; InputError names the file and line (never the line's values: a .fam holds sample ids)."""
    rows = []
    with path.open("rb") as f:
        for n, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise InputError(
                    f"{path}: line {n}: byte 0x{raw[exc.start]:02X} is not UTF-8; convert the file (`iconv`) and rerun"
                ) from None
            fields = line.split()
            if not fields:
                raise InputError(f"{path}: line {n} is empty; a {what} has one line per {fix} and no blank lines")
            if len(fields) != columns:
                raise InputError(
                    f"{path}: line {n} has {len(fields)} fields where a {what} has {columns}; the file is damaged or "
                    f"not a PLINK 1 {what} (plink2 --make-bed writes one)"
                )
            rows.append(fields)
    return rows


def check_plink(bed: Path) -> None:
    """Refuse a PLINK 1 fileset whose parts do not fit together before Hail reads it, with an
    InputError naming the file and what to do: a missing .bim or .fam, a .bed without the magic
    bytes (6c 1b), in individual-major mode (mode byte 00) or of the wrong size for the variants of
    its .bim and the samples of its .fam (truncated, or the .bim/.fam of another fileset), .bim and
    .fam lines with the wrong number of fields, and duplicate sample ids (IID) in the .fam.
    Reads the .bim and .fam (one line per variant / sample) and 3 bytes and the size of the .bed."""
    bim, fam = bed.with_suffix(".bim"), bed.with_suffix(".fam")
    absent = [str(p) for p in (bim, fam) if not p.exists()]
    if absent:
        raise InputError(f"PLINK fileset {bed.with_suffix('')}: missing {', '.join(absent)} next to {bed.name}")
    with bed.open("rb") as f:
        head = f.read(3)
    if head[:2] != _BED_MAGIC:
        raise InputError(
            f"{bed}: not a PLINK 1 .bed file (the first bytes are {head[:2].hex(' ') or 'missing'}, not 6c 1b); "
            "re-export it with `plink2 --make-bed`"
        )
    if len(head) < 3 or head[2] != 1:
        mode = f"{head[2]:02x}" if len(head) == 3 else "missing"
        raise InputError(
            f"{bed}: mode byte {mode}: only variant-major .bed files (mode 01) are read; an individual-major file "
            "(mode 00, PLINK 1.0) is converted with `plink2 --bfile ... --make-bed`"
        )
    variants = len(_plink_text(bim, 6, ".bim", "variant"))
    samples = _plink_text(fam, 6, ".fam", "sample")
    seen: dict[str, int] = {}
    for n, (_fid, iid, *_) in enumerate(samples, 1):
        if iid in seen:  # Hail keys a PLINK sample by its IID
            raise InputError(
                f"{fam}: line {n} repeats the sample id (IID, column 2) of line {seen[iid]}; sample ids must be "
                "unique: rename the sample in the .fam and rerun"
            )
        seen[iid] = n
    want = 3 + variants * ((len(samples) + 3) // 4)
    size = bed.stat().st_size
    if size != want:
        state = "truncated" if size < want else "longer than its .bim and .fam say"
        raise InputError(
            f"{bed}: {state}: {variants} variants (.bim) x {len(samples)} samples (.fam) need {want} bytes, the .bed "
            f"has {size}. Re-transfer the fileset, or check that the .bim and .fam belong to this .bed"
        )


def import_plink(bed: Path, reference: str | None, min_partitions: int | None = None) -> hl.MatrixTable:
    """A PLINK fileset (the .bim and .fam beside the .bed; A2 taken as REF, as plink2 writes it) as a
    MatrixTable with the row fields of an imported VCF (QUAL and FILTER missing, INFO empty), so
    that ``variant_rows`` and the QC read both alike. InputError when the .bim or .fam is missing."""
    bim, fam = bed.with_suffix(".bim"), bed.with_suffix(".fam")
    check_plink(bed)
    mt = hl.import_plink(
        str(bed), str(bim), str(fam), reference_genome=reference, a2_reference=True, min_partitions=min_partitions
    )
    return mt.annotate_rows(qual=hl.missing(hl.tfloat64), filters=hl.missing(hl.tset(hl.tstr)), info=hl.struct())


def plink_rules(mt: hl.MatrixTable) -> list[tuple[str, hl.Expression, hl.Expression]]:
    """The record rules a PLINK fileset can break (it has no QUAL, FORMAT or multi-allelic sites)."""
    return [
        ("invalid_allele", hl.any(lambda a: ~a.matches(_VALID_ALLELE), mt.alleles), hl.str("allele is not A/C/G/T/N"))
    ]


def text_records(path: Path, kind: str, min_partitions: int, header_lines: int = 0) -> hl.Table:
    """The record lines of the file as Hail reads raw text: contig, position, ref, alts, INFO keys,
    and the line (``header_lines`` + the record's number: records in file order)."""
    ht = hl.import_lines(str(path), min_partitions=min_partitions, force_bgz=kind == "bgzf", force=kind == "gzip")
    ht = ht.filter(~ht.text.startswith("#")).add_index("_i")
    f = ht.text.split("\t")
    keys = hl.if_else(
        (hl.len(f) > 7) & (f[7] != "."),
        f[7].split(";").map(lambda kv: kv.split("=")[0]).filter(lambda k: k != ""),
        hl.empty_array(hl.tstr),
    )
    alts = hl.or_missing(hl.len(f) > 4, hl.if_else(f[4] == ".", hl.empty_array(hl.tstr), f[4].split(",")))
    return ht.select(
        contig=f[0],
        position=hl.parse_int32(f[1]),
        ref=hl.or_missing(hl.len(f) > 3, f[3]),
        alts=alts,
        line=hl.int64(ht._i) + header_lines + 1,
        info_keys=keys,
    )


def text_stats(records: hl.Table) -> tuple[int, set[str], set[str]]:
    """How many records the text holds, every INFO key and every contig they use (one pass)."""
    n, keys, contigs = records.aggregate(
        (
            hl.agg.count(),
            hl.agg.explode(lambda k: hl.agg.collect_as_set(k), records.info_keys),
            hl.agg.collect_as_set(records.contig),
        )
    )
    return int(n), set(keys), set(contigs)


#: Built-in references a VCF's contig names are compared with, when they do not fit the one asked for.
KNOWN_REFERENCES = ("GRCh38", "GRCh37", "GRCm38", "CanFam3")


def scan_contigs(path: Path, kind: str, max_records: int = 200_000) -> set[str]:
    """The contigs a VCF names: its ##contig header lines and the first ``max_records`` records
    (a plain read of the text, for error messages: no Hail)."""
    found: set[str] = set()
    with _open_text(path, kind) as f:
        n = 0
        for line in f:
            if line.startswith("##contig=<"):
                m = re.search(r"ID=([^,>]+)", line)
                if m:
                    found.add(m.group(1))
            elif line and not line.startswith("#"):
                found.add(line.split("\t", 1)[0])
                n += 1
                if n >= max_records:
                    break
    return found


def contig_problem(path: Path, contigs: set[str], reference: str | None, recode: dict[str, str]) -> InputError | None:
    """None when every contig (after ``recode``) is in ``reference``; otherwise an InputError that names
    the contigs found, the reference asked for and the ones that fit, and what to set."""
    if reference is None or not contigs:
        return None
    known = set(hl.get_reference(reference).contigs)
    named = {recode.get(c, c) for c in contigs}
    missing = sorted(named - known)
    if not missing:
        return None
    fits = [r for r in KNOWN_REFERENCES if r != reference and named <= set(hl.get_reference(r).contigs)]
    hints = []
    if fits:
        hints.append(
            f"these names fit {' and '.join(fits)}: set the input's reference (ingest_vcf: "
            f"jobs.ingest_vcf.reference_genome={fits[0]}; gwas: --reference {fits[0]})"
        )
    prefixed = {c: ("chr" + c if not c.startswith("chr") else c[3:]) for c in missing}
    if all(v in known for v in prefixed.values()):
        example = dict(list(prefixed.items())[:2])
        hints.append(f"or rename them with jobs.ingest_vcf.contig_recoding (e.g. {example})")
    hints.append("or set the reference to none to read the positions without one")
    shown = ", ".join(missing[:8]) + (f" and {len(missing) - 8} more" if len(missing) > 8 else "")
    return InputError(
        f"{path}: contig(s) {shown} are not in the reference genome {reference} (whose contigs are named like "
        f"{', '.join(sorted(known, key=len)[:3])}); {'; '.join(hints)}. Nothing of this file was written."
    )


def reference_error(
    path: Path, kind: str, exc: Exception, reference: str | None, recode: dict[str, str]
) -> InputError | None:
    """Hail's failure on a contig outside the reference genome, as :func:`contig_problem`'s error
    (the contigs read from the file); None for any other exception."""
    text = str(exc)
    if reference is None or not re.search(r"not in the reference genome|Invalid locus|invalid contig", text, re.I):
        return None
    return contig_problem(path, scan_contigs(path, kind), reference, recode)


def record_rules(
    mt: hl.MatrixTable, header: Header, max_alleles: int
) -> list[tuple[str, hl.Expression, hl.Expression]]:
    """(rule, violated?, reason) expressions over the rows of mt, first match wins."""
    alleles = mt.alleles
    rules: list[tuple[str, hl.Expression, hl.Expression]] = [
        (
            "invalid_allele",
            hl.any(lambda a: ~a.matches(_VALID_ALLELE), alleles),
            "allele(s) "
            + hl.str(alleles.filter(lambda a: ~a.matches(_VALID_ALLELE)))
            + " are not A/C/G/T/N, * or symbolic",
        ),
        (
            "too_many_alleles",
            hl.len(alleles) > max_alleles,
            hl.str(hl.len(alleles)) + f" alleles at one site (more than jobs.ingest_vcf.max_alleles={max_alleles})",
        ),
        (
            "qual_not_finite",
            hl.is_defined(mt.qual) & (hl.is_nan(mt.qual) | hl.is_infinite(mt.qual)),
            "QUAL is " + hl.str(mt.qual),
        ),
        ("qual_negative", hl.is_defined(mt.qual) & (mt.qual < 0), "QUAL " + hl.str(mt.qual) + " is negative"),
    ]
    entry = mt.entry
    if "AD" in entry and header.fmt.get("AD", ("R", ""))[0] == "R":
        mt_ad = hl.agg.count_where(hl.is_defined(mt.AD) & (hl.len(mt.AD) != hl.len(mt.alleles)))
        rules.append(
            (
                "ad_length",
                mt_ad > 0,
                "AD has the wrong number of values for "
                + hl.str(hl.len(alleles))
                + " alleles in "
                + hl.str(mt_ad)
                + " sample(s)",
            )
        )
    for name in ("DP", "GQ"):
        if name in entry and entry[name].dtype == hl.tint32:
            neg = hl.agg.count_where(entry[name] < 0)
            rules.append((f"negative_{name.lower()}", neg > 0, f"{name} is negative in " + hl.str(neg) + " sample(s)"))
    for name in entry:
        t = entry[name].dtype
        if t == hl.tfloat64 or t == hl.tfloat32:
            nan = hl.agg.count_where(hl.is_nan(entry[name]))
        elif t in (hl.tarray(hl.tfloat64), hl.tarray(hl.tfloat32)):
            nan = hl.agg.count_where(
                hl.any(lambda x: hl.is_nan(x), hl.or_else(entry[name], hl.empty_array(t.element_type)))
            )
        else:
            continue
        rules.append((f"nan_{name.lower()}", nan > 0, f"FORMAT {name} is NaN in " + hl.str(nan) + " sample(s)"))
    return rules


def variant_rows(mt: hl.MatrixTable, rules: list[tuple[str, hl.Expression, hl.Expression]]) -> hl.Table:
    """One row per record: site fields, INFO as JSON, calls as arrays, and the first rule broken."""
    flags = {f"_r{i}": cond for i, (_, cond, _) in enumerate(rules)}
    reasons = {f"_why{i}": why for i, (_, _, why) in enumerate(rules)}
    mt = mt.annotate_rows(**flags, **reasons)
    entry = mt.entry
    fields: dict[str, Any] = {
        "gt": hl.str(mt.GT) if "GT" in entry else hl.missing(hl.tstr),
        "dp": mt.DP if "DP" in entry and entry["DP"].dtype == hl.tint32 else hl.missing(hl.tint32),
        "gq": mt.GQ if "GQ" in entry and entry["GQ"].dtype == hl.tint32 else hl.missing(hl.tint32),
        "ad": mt.AD
        if "AD" in entry and entry["AD"].dtype == hl.tarray(hl.tint32)
        else hl.missing(hl.tarray(hl.tint32)),
    }
    mt = mt.select_entries(**fields)
    ht = mt.localize_entries("_e", "_cols").key_by()
    rule = hl.missing(hl.tstr)
    reason = hl.missing(hl.tstr)
    for i in reversed(range(len(rules))):
        cond = hl.coalesce(ht[f"_r{i}"], False)
        rule = hl.if_else(cond, rules[i][0], rule)
        reason = hl.if_else(cond, ht[f"_why{i}"], reason)
    return ht.select(
        contig=ht.locus.contig,
        position=ht.locus.position,
        ref=ht.alleles[0],
        alts=ht.alleles[1:],
        rsid=ht.rsid,
        qual=ht.qual,
        filters=hl.or_missing(hl.is_defined(ht.filters), hl.sorted(hl.array(ht.filters))),
        info_json=hl.json(ht.info),
        gt=ht._e.map(lambda e: e.gt),
        dp=ht._e.map(lambda e: e.dp),
        gq=ht._e.map(lambda e: e.gq),
        ad=ht._e.map(lambda e: e.ad),
        _invalid_rule=rule,
        _invalid_reason=reason,
    )


def hail_error(path: Path, kind: str, exc: Exception) -> InputError | None:
    """Hail's parse failure as an InputError naming the file, line and Hail's reason; None when
    the exception is not a parse failure."""
    text = str(exc)
    where = re.search(r"offset (\d+): error while parsing line", text)
    tail = text.split("error while parsing line", 1)[-1]
    cause = re.search(r"VCFParseError: ([^\n]+)", tail) or re.search(
        r"Caused by: (?!is\.hail\.utils\.HailException)[\w.$]+: ([^\n]+)", tail
    )
    if not where and "VCFParseError" not in text:
        return None
    line = ""
    if where and kind == "text":
        offset = int(where.group(1))
        with path.open("rb") as f:
            number = f.read(offset).count(b"\n") + 1
        line = f" line {number}:"
    elif where:
        line = f" (compressed offset {where.group(1)}):"
    reason = cause.group(1).strip() if cause else "unparseable record"
    return InputError(
        f"{path}:{line} Hail could not parse the record: {reason}. Check it with "
        f"`bcftools view {path.name} > /dev/null`, fix or drop the record (or its header line), and rerun."
    )


SITE = ("contig", "position", "ref", "alts")


def site_key() -> Column:
    """``contig:position:ref:alts`` (alts joined by ','): a record's row_key in quarantine.vcf_variants."""
    return F.concat_ws(
        ":",
        F.col("contig"),
        F.col("position").cast("string"),
        F.coalesce(F.col("ref"), F.lit("")),
        F.array_join(F.coalesce(F.col("alts"), F.array().cast("array<string>")), ","),
    )


def match_lines(text: DataFrame, rows: DataFrame, recode: dict[str, str] | None = None) -> tuple[DataFrame, DataFrame]:
    """Pair bronze rows of one file with the record lines of its text (``text_records`` as a
    DataFrame: contig, position, ref, alts, line) by site (contig after ``recode``, position, ref,
    alts): (rows with a ``line`` column, text records no row claims).

    Records sharing a site are paired in line order, so counts are exact; which of them a row
    gets is then a guess (the rows are alike). The unclaimed text records are the ones Hail
    skipped while reading. A row without a text record gets a null line."""
    contig = F.col("contig")
    if recode:
        mapping = F.create_map(*[x for k, v in sorted(recode.items()) for x in (F.lit(k), F.lit(v))])
        contig = F.coalesce(mapping[F.col("contig")], F.col("contig"))
    t = text.select(contig.alias("contig"), "position", "ref", "alts", "line")
    t = t.withColumn("_n", F.row_number().over(Window.partitionBy(*SITE).orderBy("line")))
    order = [F.col(c).asc_nulls_last() for c in rows.columns if c not in SITE and not c.startswith("_")] or [F.lit(1)]
    r = rows.withColumn("_n", F.row_number().over(Window.partitionBy(*SITE).orderBy(*order)))
    tk = t.select(*[F.col(c).alias(f"_t_{c}") for c in (*SITE, "_n", "line")])
    paired = [r[c].eqNullSafe(tk[f"_t_{c}"]) for c in (*SITE, "_n")]
    with_line = r.join(tk, paired, "left").select(*[r[c] for c in rows.columns], tk["_t_line"].alias("line"))
    unclaimed = tk.join(r, paired, "left_anti").select(*[F.col(f"_t_{c}").alias(c) for c in (*SITE, "line")])
    return with_line, unclaimed


def quarantine_rows(flagged: DataFrame, skipped: DataFrame, source_file: str, digest: str, run_id: str) -> DataFrame:
    """quarantine.vcf_variants rows (omicslake.quarantine's shape + file_sha256): the bronze rows
    flagged by a record rule (with ``_invalid_rule``, ``_invalid_reason`` and ``line``) and the text
    records Hail skipped (``match_lines``'s unclaimed ones), which get rule ``unparsed_record``."""
    from omicslake import quarantine

    site = ["contig", "position", "ref", "alts", "rsid", "qual", "filters"]
    extra = {"file_sha256": F.lit(digest)}
    a = quarantine.rows(
        flagged.withColumn("_key", site_key()),
        "_key",
        [c for c in site if c in flagged.columns],
        F.lit(source_file),
        "line",
        run_id,
        rule="_invalid_rule",
        reason="_invalid_reason",
        extra=extra,
    )
    b = quarantine.rows(
        skipped.withColumn("_key", site_key()),
        "_key",
        list(SITE),
        F.lit(source_file),
        "line",
        run_id,
        rule=F.lit("unparsed_record"),
        reason=F.lit("Hail skipped this record while reading (invalid REF/ALT or malformed fields)"),
        extra=extra,
    )
    return a.unionByName(b)
