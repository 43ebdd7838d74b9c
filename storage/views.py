"""The SQL views users query, over `events` and the typed tables derived from it (storage/derived.py).

`install(con)` creates `ledger_meta` and the derived tables (deriving what they lack), and (re)creates the
views when the file's views are older than VIEWS_VERSION; bump VIEWS_VERSION whenever a view's SQL changes.
The columns are a public interface: add freely, rename never. `VIEW_DOCS` describes them for `ledgerlab schema`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ledgerlab.storage.derived import backfill
from ledgerlab.storage.schema import EVENTS_DDL, META_DDL

if TYPE_CHECKING:
    import duckdb

VIEWS_VERSION = 15  # 6: llm_calls.reasoning; 7: incumbents' holdback improvement; 8: `runs` read once; 9: holdback
# intervals widened to the spread between windows; 10: `runs` reads the typed `run_events` (storage/derived.py);
# 11: independent designs' holdback pairs in `incumbents`; 12: t quantiles planned in a third of the time;
# 13: hypotheses' links, verdicts' decisions and incumbent changes read from the typed `hypothesis_events`;
# 14: `incumbents` joins the paired campaigns first and computes the holdback's t quantile once; 15: `runs`
# joins starts and ends back by type


# 95% two-sided t quantiles for df 1..30; beyond, the first Cornish-Fisher term z + (z^3 + z) / (4 df),
# which is within 0.002 of the exact quantile for df > 30.
_T95 = (
    "[12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, "
    "2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, "
    "2.042]"
)

# How the SQL is shaped (measured over 1M events on the 2-core dev box; see bench/ledger.py):
# - Fields read from many events (runs, hypothesis links, decisions) come from the typed tables of
#   storage/derived.py, not the JSON payloads; what only one view shows (a proposal's diff, a verdict's
#   statistics, an LLM call) is parsed from `events`.
# - json_transform parses a payload once into a typed struct; each ->> parses it again (13 ->> per verdict
#   row cost 4x one json_transform).
# - `type = 'X'` is pushed into the scan, which then reads payloads of matching rows only; `type IN (...)`
#   is only a row-group hint followed by a filter, so every row's payload is read: `_of_types` scans one
#   type at a time (UNION ALL), 2-7x cheaper for the rarer types.
# - "latest event per key" aggregates carry BIGINT seqs only and join the winning rows back by seq;
#   arg_max over payload structs or strings costs 2-3x more.
# - No large CTE is read twice (DuckDB would materialize it, and a `WHERE campaign_id = ...` on the view would
#   no longer reach the scans): one campaign's rows stay cheap.
# tests/test_storage_views.py checks the results over a hand-made stream; a rewrite must keep them identical.


# Student t's 97.5% quantile at any df >= 1 (Welch's df are fractional): log t interpolated linearly in 1/df
# between these knots, within 0.1% of scipy's; past df 30 the Cornish-Fisher series to 1/df^4, within 1e-5.
_T_KNOTS = (
    "[1, 1.125, 1.25, 1.375, 1.5, 1.625, 1.75, 1.875, 2, 2.25, 2.5, 2.75, 3, 3.25, 3.5, 3.75, 4, 4.5, 5, 5.5, 6, 7, "
    "8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30]"
)
_T_VALUES = (
    "[12.706205, 9.810840, 8.027951, 6.845719, 6.016663, 5.409391, 4.948848, 4.589568, 4.302653, 3.875480, "
    "3.574655, 3.352545, 3.182446, 3.048340, 2.940089, 2.850989, 2.776445, 2.658912, 2.570582, 2.501859, "
    "2.446912, 2.364624, 2.306004, 2.262157, 2.228139, 2.200985, 2.178813, 2.160369, 2.144787, 2.131450, "
    "2.119905, 2.109816, 2.100922, 2.093024, 2.085963, 2.079614, 2.073873, 2.068658, 2.063899, 2.059539, "
    "2.055529, 2.051831, 2.048407, 2.045230, 2.042272]"
)
_Z975 = 1.959963984540054


def _knot(i: str) -> str:
    """SQL for knot number `i` (1..45), from the knots' four even steps: exactly the list's value."""
    return (f"(CASE WHEN {i} <= 9 THEN 1 + ({i} - 1)::DOUBLE / 8 WHEN {i} <= 17 THEN 2 + ({i} - 9)::DOUBLE / 4 "
            f"WHEN {i} <= 21 THEN 4 + ({i} - 17)::DOUBLE / 2 ELSE ({i} - 15)::DOUBLE END)")


def _t975(df: str) -> str:
    """SQL for t's 97.5% quantile at `df` (a column or expression; NULL below 1)."""
    # Planning, not running, is what this costs: each use once inlined `df` a dozen times and the two lists six
    # times, 3,900 characters (nine uses made `incumbents` take 0.2 s to bind and optimize at any size). Here
    # lambdas bind the values list, df and the knot index once each, and the knots come from their even steps.
    d, j, v = "t975_df", "t975_j", "t975_v"
    below = (f"(CASE WHEN NOT ({d} >= 1 AND {d} <= 30) THEN 1 WHEN {d} < 2 THEN floor(({d} - 1) * 8) + 1 "
             f"WHEN {d} < 4 THEN floor(({d} - 2) * 4) + 9 WHEN {d} < 6 THEN floor(({d} - 4) * 2) + 17 "
             f"ELSE least(floor({d}) + 15, 44) END)::INTEGER")  # the knot just below: how many knots are <= df
    between = (f"exp(ln({v}[{j}]) + (1 / {d} - 1 / {_knot(j)}) / (1 / {_knot(f'({j} + 1)')} - 1 / {_knot(j)})"
               f" * (ln({v}[{j} + 1]) - ln({v}[{j}])))")
    series = (f"{_Z975} + 2.372271230298564 / {d} + 2.8224986157396135 / {d} ^ 2"
              f" + 2.5558496795077255 / {d} ^ 3 + 1.589534053393825 / {d} ^ 4")
    quantile = (f"CASE WHEN NOT {d} >= 1 OR isnan({d}) THEN NULL WHEN {d} > 30 THEN {series} "
                f"ELSE list_transform([{below}], lambda {j}: {between})[1] END")
    return (f"list_transform([{_T_VALUES}::DOUBLE[]], lambda {v}: "
            f"list_transform([({df})::DOUBLE], lambda {d}: {quantile})[1])[1]")


def _json(**fields: str) -> str:
    """A json_transform structure: field name -> DuckDB type."""
    return "{" + ",".join(f'"{name}":"{kind}"' for name, kind in fields.items()) + "}"


def _of_types(*types: str) -> str:
    """`events` rows of these types, one pushed-down equality scan per type."""
    return "(" + " UNION ALL ".join(f"SELECT * FROM events WHERE type = '{t}'" for t in types) + ")"


_VERDICT = _json(hypothesis_id="VARCHAR", decision="VARCHAR", reason="VARCHAR", test="VARCHAR",
                 statistic="DOUBLE", p_value="DOUBLE", effect="DOUBLE", ci_low="DOUBLE", ci_high="DOUBLE",
                 n_candidate="INTEGER", n_incumbent="INTEGER", alpha_spent="DOUBLE", looks="INTEGER",
                 details="JSON")
_PROPOSED = _json(hypothesis_id="VARCHAR", agent="VARCHAR", proposer="VARCHAR", rationale="VARCHAR",
                  parent_candidate_id="VARCHAR", diff="VARCHAR", changes="JSON")
_LLM_CALL = _json(call_id="VARCHAR", agent="VARCHAR", model="VARCHAR", purpose="VARCHAR",
                  prompt_tokens="BIGINT", completion_tokens="BIGINT", cost_usd="DOUBLE", latency_s="DOUBLE",
                  ok="BOOLEAN", error="VARCHAR", reasoning="VARCHAR")
# Each campaign's incumbent now: that of its latest CampaignStarted (the baseline) or IncumbentChanged event.
_CURRENT = """SELECT campaign_id, arg_max(candidate_id, seq) AS candidate_id
    FROM (SELECT campaign_id, seq, payload->>'baseline_candidate_id' AS candidate_id
          FROM events WHERE type = 'CampaignStarted'
          UNION ALL
          SELECT campaign_id, seq, candidate_id FROM hypothesis_events WHERE type = 'IncumbentChanged')
    GROUP BY campaign_id"""

VIEWS: dict[str, str] = {
    "runs": """
WITH latest AS (  -- per run: its latest start, and its latest end (which counts only if after that start)
    SELECT campaign_id, max(seq) FILTER (WHERE type = 'RunStarted') AS started_seq,
           CASE WHEN run_id IS NOT NULL  -- events without a run_id are never paired
                THEN max(seq) FILTER (WHERE type <> 'RunStarted') END AS ended_seq
    FROM run_events
    GROUP BY campaign_id, run_id
)
SELECT s.run_id AS run_id, l.campaign_id AS campaign_id, s.hypothesis_id AS hypothesis_id,
       s.candidate_id AS candidate_id, s.role AS role, s.seed AS seed, s.attempt AS attempt,
       CASE WHEN e.type IS NULL THEN 'running' WHEN e.type = 'RunFinished' THEN 'finished' ELSE e.status END
           AS status,
       e.value AS value, e.control_value AS control_value, e.metrics AS metrics,
       e.control_metrics AS control_metrics, e.error AS error, s.recorded_at AS started_at,
       e.recorded_at AS finished_at, e.duration_s AS duration_s, s.worker AS worker, e.log_path AS log_path,
       s.shared_window AS shared_window
FROM latest l  -- each side's type filter halves the rows its join probes (0.30 -> 0.19 CPU s at 1M events)
JOIN (SELECT * FROM run_events WHERE type = 'RunStarted') s ON s.seq = l.started_seq
LEFT JOIN (SELECT * FROM run_events WHERE type <> 'RunStarted') e ON e.seq = l.ended_seq AND l.ended_seq > l.started_seq
""",
    "verdicts": f"""
SELECT v.hypothesis_id AS hypothesis_id, campaign_id, v.decision AS decision, v.reason AS reason, v.test AS test,
       v.statistic AS statistic, v.p_value AS p_value, v.effect AS effect, v.ci_low AS ci_low,
       v.ci_high AS ci_high, v.n_candidate AS n_candidate, v.n_incumbent AS n_incumbent,
       v.alpha_spent AS alpha_spent, v.looks AS looks, v.details AS details, recorded_at AS decided_at
FROM (SELECT campaign_id, recorded_at, json_transform(payload, '{_VERDICT}') AS v
      FROM events WHERE type = 'VerdictReached')
""",
    "hypotheses": f"""
WITH proposed AS (
    SELECT campaign_id, recorded_at, json_transform(payload, '{_PROPOSED}') AS h
    FROM events WHERE type = 'HypothesisProposed'
), patch AS (
    SELECT campaign_id, hypothesis_id, arg_max(reason, seq) AS reason, max(recorded_at) AS at
    FROM hypothesis_events WHERE type = 'PatchRejected' GROUP BY ALL
), cand AS (
    SELECT campaign_id, hypothesis_id, arg_max(candidate_id, seq) AS candidate_id
    FROM hypothesis_events WHERE type = 'CandidateCreated' GROUP BY ALL
), verdict AS (
    SELECT campaign_id, hypothesis_id, arg_max(decision, seq) AS decision,
           arg_max(coalesce(reason, ''), seq) AS reason, max(recorded_at) AS at
    FROM hypothesis_events WHERE type = 'VerdictReached' GROUP BY ALL
), accepted AS (
    SELECT campaign_id, candidate_id, arg_max(hypothesis_id, seq) AS hypothesis_id
    FROM hypothesis_events WHERE type = 'IncumbentChanged' GROUP BY ALL
)
SELECT p.h.hypothesis_id AS hypothesis_id, p.campaign_id, p.h.agent AS agent, p.h.proposer AS proposer,
       p.h.rationale AS rationale, p.h.parent_candidate_id AS parent_candidate_id, c.candidate_id,
       p.h.diff AS diff, p.h.changes AS changes,
       CASE WHEN v.decision = 'accept' THEN 'accepted' WHEN v.decision = 'reject' THEN 'rejected'
            WHEN r.hypothesis_id IS NOT NULL THEN 'patch_rejected' WHEN c.hypothesis_id IS NOT NULL THEN 'testing'
            ELSE 'proposed' END AS status,
       CASE WHEN v.decision = 'reject' THEN v.reason WHEN v.decision IS NULL THEN r.reason END AS reject_reason,
       p.recorded_at AS proposed_at, coalesce(v.at, r.at) AS decided_at, a.hypothesis_id AS built_on_hypothesis_id
FROM proposed p
LEFT JOIN patch r ON r.campaign_id = p.campaign_id AND r.hypothesis_id = p.h.hypothesis_id
LEFT JOIN cand c ON c.campaign_id = p.campaign_id AND c.hypothesis_id = p.h.hypothesis_id
LEFT JOIN verdict v ON v.campaign_id = p.campaign_id AND v.hypothesis_id = p.h.hypothesis_id
LEFT JOIN accepted a ON a.campaign_id = p.campaign_id AND a.candidate_id = p.h.parent_candidate_id
""",
    "incumbents": f"""
WITH fin AS MATERIALIZED (  -- the finished runs, computed once for `pool` and `held_runs` (`runs` is the cost)
    SELECT campaign_id, candidate_id, hypothesis_id, role, seed, value, control_value, metrics, control_metrics
    FROM runs WHERE status = 'finished'
), starts AS (
    SELECT campaign_id, arg_max(payload->>'baseline_candidate_id', seq) AS baseline_candidate_id,
           arg_max(payload->'metric'->>'direction', seq) AS direction, arg_max(payload->>'design', seq) AS design,
           arg_max(payload->'metric'->>'kind', seq) AS kind,
           arg_max(json_extract_string(payload, '$.metric.sums[0]'), seq) AS n_key,
           arg_max(json_extract_string(payload, '$.metric.sums[1]'), seq) AS sum_key,
           arg_max(json_extract_string(payload, '$.metric.sums[2]'), seq) AS sumsq_key,
           -- as core/holdback.recorded_settings: a campaign recorded before a setting existed runs without it
           arg_max(coalesce((payload->'judge'->>'holdback_max_pairs')::INTEGER, 0), seq) AS max_pairs,
           arg_max(coalesce((payload->'judge'->>'min_diff_df')::INTEGER, 8), seq) AS min_diff_df
    FROM events WHERE type = 'CampaignStarted' GROUP BY campaign_id
), history AS (  -- seed_base: the first seed not used to select it (CampaignStarted before schema v2: 0)
    SELECT campaign_id, seq, recorded_at AS since, payload->>'baseline_candidate_id' AS candidate_id,
           NULL::VARCHAR AS hypothesis_id, NULL::VARCHAR AS previous_id,
           coalesce((payload->>'seed_base')::BIGINT, 0) AS seed_base
    FROM events WHERE type = 'CampaignStarted'
    UNION ALL
    SELECT campaign_id, seq, recorded_at, candidate_id, hypothesis_id, previous_candidate_id, coalesce(seed_base, 0)
    FROM hypothesis_events WHERE type = 'IncumbentChanged'
), pool AS MATERIALIZED (  -- the finished runs effects rest on, read by four CTEs: incumbent replicates, the baseline's
    SELECT r.campaign_id, r.candidate_id, r.hypothesis_id, r.role, r.seed, r.value, r.control_value, r.metrics,
           r.control_metrics, r.candidate_id = s.baseline_candidate_id AS of_baseline
    FROM fin r JOIN starts s ON s.campaign_id = r.campaign_id
    WHERE r.role = 'incumbent' OR r.candidate_id = s.baseline_candidate_id
), fresh AS (  -- its runs as incumbent; concurrent designs: against the replaced incumbent, same window
    SELECT r.campaign_id, r.candidate_id, avg(r.value) AS value, count(*) AS n,
           CASE WHEN any_value(s.kind) = 'proportion' THEN
                    sum((r.metrics->>'successes')::DOUBLE) / sum((r.metrics->>'trials')::DOUBLE)
                    - sum((r.control_metrics->>'successes')::DOUBLE) / sum((r.control_metrics->>'trials')::DOUBLE)
                WHEN any_value(s.sum_key) IS NOT NULL THEN  -- a per-unit mean: pooled over the runs' units
                    sum(json_extract(r.metrics, '$.' || s.sum_key)::DOUBLE)
                        / sum(json_extract(r.metrics, '$.' || s.n_key)::DOUBLE)
                    - sum(json_extract(r.control_metrics, '$.' || s.sum_key)::DOUBLE)
                        / sum(json_extract(r.control_metrics, '$.' || s.n_key)::DOUBLE)
                ELSE avg(r.value - r.control_value) END AS window_diff
    FROM pool r JOIN starts s ON s.campaign_id = r.campaign_id
    WHERE r.role = 'incumbent' AND s.design IS NOT NULL
    GROUP BY r.campaign_id, r.candidate_id
), confirming AS (  -- each accepted change's runs after its acceptance (tagged with its hypothesis), per seed
    SELECT h.campaign_id, h.seq, p.seed,
           avg(p.value) FILTER (WHERE p.candidate_id = h.candidate_id)
               - avg(p.value) FILTER (WHERE p.candidate_id = h.previous_id) AS paired_diff,
           count(*) FILTER (WHERE p.candidate_id = h.candidate_id AND p.control_value IS NOT NULL) AS windows,
           sum(p.value - p.control_value) FILTER (WHERE p.candidate_id = h.candidate_id) AS window_diff_sum,
           sum((p.value - p.control_value) ^ 2) FILTER (WHERE p.candidate_id = h.candidate_id) AS window_diff_sq,
           count(p.metrics->>'successes') FILTER (WHERE p.candidate_id = h.candidate_id
                                                  AND p.control_metrics->>'trials' IS NOT NULL) AS counted,
           sum((p.metrics->>'successes')::DOUBLE) FILTER (WHERE p.candidate_id = h.candidate_id) AS cs,
           sum((p.metrics->>'trials')::DOUBLE) FILTER (WHERE p.candidate_id = h.candidate_id) AS ct,
           sum((p.control_metrics->>'successes')::DOUBLE) FILTER (WHERE p.candidate_id = h.candidate_id) AS is_,
           sum((p.control_metrics->>'trials')::DOUBLE) FILTER (WHERE p.candidate_id = h.candidate_id) AS it,
           count(json_extract(p.metrics, '$.' || s.sumsq_key)) FILTER (WHERE p.candidate_id = h.candidate_id
               AND json_extract(p.control_metrics, '$.' || s.sumsq_key) IS NOT NULL) AS summed,
           sum(json_extract(p.metrics, '$.' || s.n_key)::DOUBLE) FILTER (WHERE p.candidate_id = h.candidate_id) AS nc,
           sum(json_extract(p.metrics, '$.' || s.sum_key)::DOUBLE) FILTER (WHERE p.candidate_id = h.candidate_id) AS sc,
           sum(json_extract(p.metrics, '$.' || s.sumsq_key)::DOUBLE) FILTER (WHERE p.candidate_id = h.candidate_id)
               AS ssc,
           sum(json_extract(p.control_metrics, '$.' || s.n_key)::DOUBLE) FILTER (WHERE p.candidate_id = h.candidate_id)
               AS ni,
           sum(json_extract(p.control_metrics, '$.' || s.sum_key)::DOUBLE) FILTER (WHERE p.candidate_id = h.candidate_id)
               AS si,
           sum(json_extract(p.control_metrics, '$.' || s.sumsq_key)::DOUBLE)
               FILTER (WHERE p.candidate_id = h.candidate_id) AS ssi
    FROM history h
    JOIN starts s ON s.campaign_id = h.campaign_id
    JOIN pool p ON p.campaign_id = h.campaign_id AND p.hypothesis_id = h.hypothesis_id AND p.role = 'incumbent'
                   AND (p.candidate_id = h.candidate_id OR p.candidate_id = h.previous_id)
    GROUP BY h.campaign_id, h.seq, p.seed
), confirmed AS (  -- as core/effects.confirmed: concurrent designs pool the windows, independent ones pair seeds
    SELECT c.campaign_id, c.seq, any_value(s.design) AS design, any_value(s.kind) AS kind,
           any_value(s.sum_key) AS sum_key, CASE WHEN any_value(s.direction) = 'minimize' THEN -1 ELSE 1 END AS sign,
           count(c.paired_diff) AS pairs, avg(c.paired_diff) AS pair_mean, stddev_samp(c.paired_diff) AS pair_sd,
           sum(c.windows) AS windows, sum(c.window_diff_sum) AS wd_sum, sum(c.window_diff_sq) AS wd_sq,
           sum(c.counted) AS counted, sum(c.cs) AS cs, sum(c.ct) AS ct, sum(c.is_) AS is_, sum(c.it) AS it,
           sum(c.summed) AS summed, sum(c.nc) AS nc, sum(c.sc) AS sc, sum(c.ssc) AS ssc, sum(c.ni) AS ni,
           sum(c.si) AS si, sum(c.ssi) AS ssi
    FROM confirming c JOIN starts s ON s.campaign_id = c.campaign_id
    GROUP BY c.campaign_id, c.seq
), proportions AS (  -- the judge's two-proportion test (core/stats.proportion_test, δ = 0) on pooled windows
    SELECT *, sign * (cs / ct - is_ / it) AS p_effect,
           sqrt((cs / ct) * (1 - cs / ct) / ct + (is_ / it) * (1 - is_ / it) / it) AS se_unpooled,
           sqrt(((cs + is_) / (ct + it)) * (1 - (cs + is_) / (ct + it)) * (1 / ct + 1 / it)) AS se_pooled,
           least(ct, it) * least(cs + is_, ct + it - cs - is_) / (ct + it) < 5 AS exact,
           (nc < 2 OR ni < 2) AS one_unit, sc / nc AS mc, si / ni AS mi,
           CASE WHEN nc > 1 THEN greatest(ssc - sc * sc / nc, 0) / (nc - 1) ELSE 0 END AS vc,
           CASE WHEN ni > 1 THEN greatest(ssi - si * si / ni, 0) / (ni - 1) ELSE 0 END AS vi
    FROM confirmed
), tested AS (  -- (effect, standard error, df, method) of each confirmation; df NULL: normal
    SELECT campaign_id, seq,
           CASE WHEN design = 'concurrent' AND windows > 0 THEN
                CASE WHEN kind = 'proportion' AND counted = windows AND ct > 0 AND it > 0 THEN struct_pack(
                         effect := p_effect,
                         se := CASE WHEN se_unpooled > 0 THEN se_unpooled
                                    WHEN NOT exact AND se_pooled > 0 THEN se_pooled END,
                         df := NULL::DOUBLE,
                         method := CASE WHEN exact THEN 'fisher exact' ELSE 'two-proportion z' END
                                   || ' on ' || windows || ' fresh same-window A/B runs, pooled')
                     WHEN sum_key IS NOT NULL AND summed = windows THEN struct_pack(
                         effect := CASE WHEN nc < 1 OR ni < 1 OR nc + ni < 3 THEN 0.0 ELSE sign * (mc - mi) END,
                         se := CASE WHEN nc < 1 OR ni < 1 OR nc + ni < 3 THEN NULL
                                    WHEN one_unit THEN nullif(sqrt(((nc - 1) * vc + (ni - 1) * vi) / (nc + ni - 2)
                                                                   * (1 / nc + 1 / ni)), 0)
                                    ELSE nullif(sqrt(vc / nc + vi / ni), 0) END,
                         df := CASE WHEN one_unit THEN nc + ni - 2
                                    WHEN vc / nc + vi / ni > 0 THEN (vc / nc + vi / ni) ^ 2
                                        / ((vc / nc) ^ 2 / (nc - 1) + (vi / ni) ^ 2 / (ni - 1)) END,
                         method := CASE WHEN one_unit THEN 't (one unit, pooled var)' ELSE 'welch (sums)' END
                                   || ' on ' || windows || ' fresh same-window A/B runs, pooled')
                     ELSE struct_pack(  -- per-run values only: their mean difference, t on the runs
                         effect := sign * wd_sum / windows,
                         se := CASE WHEN windows > 1 THEN sqrt(greatest(wd_sq - wd_sum * wd_sum / windows, 0)
                                                               / (windows - 1) / windows) END,
                         df := (windows - 1)::DOUBLE,
                         method := 'same-window A/B on ' || windows || ' fresh runs') END
                WHEN design <> 'concurrent' AND pairs >= 2 THEN struct_pack(
                         effect := sign * pair_mean, se := coalesce(pair_sd, 0) / sqrt(pairs), df := (pairs - 1)::DOUBLE,
                         method := 'paired t on ' || pairs || ' fresh seeds') END AS t,
           CASE WHEN design = 'concurrent' THEN windows ELSE pairs END AS n
    FROM proportions
), held_runs AS (  -- concurrent designs: the holdback, an incumbent against the baseline in one window
    SELECT r.campaign_id, r.candidate_id, count(*) AS windows,
           any_value(s.kind) AS kind, any_value(s.sum_key) AS sum_key,
           CASE WHEN any_value(s.direction) = 'minimize' THEN -1 ELSE 1 END AS sign,
           count(r.metrics->>'successes') FILTER (WHERE r.control_metrics->>'trials' IS NOT NULL) AS counted,
           sum((r.metrics->>'successes')::DOUBLE) AS cs, sum((r.metrics->>'trials')::DOUBLE) AS ct,
           sum((r.control_metrics->>'successes')::DOUBLE) AS is_, sum((r.control_metrics->>'trials')::DOUBLE) AS it,
           count(json_extract(r.metrics, '$.' || s.sumsq_key))
               FILTER (WHERE json_extract(r.control_metrics, '$.' || s.sumsq_key) IS NOT NULL) AS summed,
           sum(json_extract(r.metrics, '$.' || s.n_key)::DOUBLE) AS nc,
           sum(json_extract(r.metrics, '$.' || s.sum_key)::DOUBLE) AS sc,
           sum(json_extract(r.metrics, '$.' || s.sumsq_key)::DOUBLE) AS ssc,
           sum(json_extract(r.control_metrics, '$.' || s.n_key)::DOUBLE) AS ni,
           sum(json_extract(r.control_metrics, '$.' || s.sum_key)::DOUBLE) AS si,
           sum(json_extract(r.control_metrics, '$.' || s.sumsq_key)::DOUBLE) AS ssi,
           count(*) FILTER (WHERE r.control_value <> 0) AS rated,
           avg(r.value - r.control_value) FILTER (WHERE r.control_value <> 0) AS wd_mean,
           stddev_samp(r.value - r.control_value) FILTER (WHERE r.control_value <> 0) AS wd_sd,
           avg((r.value - r.control_value) / r.control_value) FILTER (WHERE r.control_value <> 0) AS rel_mean,
           stddev_samp((r.value - r.control_value) / r.control_value) FILTER (WHERE r.control_value <> 0) AS rel_sd
    FROM fin r JOIN starts s ON s.campaign_id = r.campaign_id
    WHERE r.role = 'holdback' AND r.value IS NOT NULL AND r.control_value IS NOT NULL
    GROUP BY r.campaign_id, r.candidate_id
), paired_runs AS (  -- independent designs with a holdback: the incumbent's and the baseline's runs on its seeds
    SELECT i.campaign_id, i.candidate_id, s.min_diff_df, CASE WHEN s.direction = 'minimize' THEN -1 ELSE 1 END AS sign,
           count(*) AS k, avg(i.value - b.value) AS d_mean, var_samp(i.value - b.value) AS d_var, avg(b.value) AS m0
    FROM fin i
    JOIN starts s ON s.campaign_id = i.campaign_id
    JOIN fin b ON b.campaign_id = i.campaign_id AND b.seed = i.seed AND b.role = 'holdback'
                  AND b.candidate_id = s.baseline_candidate_id
    WHERE i.role = 'holdback' AND s.design <> 'concurrent' AND s.max_pairs > 0
          AND i.candidate_id <> s.baseline_candidate_id
    GROUP BY ALL
), decided AS (  -- hypotheses with a verdict, and the incumbent each was tested on (campaigns with pairs only)
    SELECT p.campaign_id, p.hypothesis_id, p.parent_candidate_id AS parent_id
    FROM hypothesis_events p
    SEMI JOIN (SELECT campaign_id, hypothesis_id FROM hypothesis_events WHERE type = 'VerdictReached') v
        ON v.campaign_id = p.campaign_id AND v.hypothesis_id = p.hypothesis_id
    WHERE p.type = 'HypothesisProposed' AND p.campaign_id IN (SELECT campaign_id FROM paired_runs)
), diff_groups AS (  -- the judge's pool (planner.history): each decided hypothesis's runs minus its incumbent's
    SELECT c.campaign_id, c.hypothesis_id, count(*) AS n, var_samp(c.value - i.value) AS v
    FROM (SELECT DISTINCT campaign_id FROM paired_runs) pc  -- first: DuckDB put it last, after joining every run
    JOIN fin c ON c.campaign_id = pc.campaign_id
    JOIN decided d ON d.campaign_id = c.campaign_id AND d.hypothesis_id = c.hypothesis_id
    JOIN fin i ON i.campaign_id = c.campaign_id AND i.candidate_id = d.parent_id AND i.seed = c.seed
                  AND i.role = 'incumbent'
    WHERE c.role <> 'incumbent' AND c.campaign_id IN (SELECT campaign_id FROM paired_runs)
    GROUP BY ALL
), replicate_groups AS (  -- and each incumbent's replicates (2σ² stands in while the differences have few df)
    SELECT campaign_id, candidate_id, count(*) AS n, var_samp(value) AS v
    FROM fin WHERE role = 'incumbent' AND campaign_id IN (SELECT campaign_id FROM paired_runs)
    GROUP BY ALL
), pools AS (
    SELECT p.campaign_id, p.candidate_id,
           coalesce(max(d.ss), 0) + CASE WHEN p.k >= 2 THEN (p.k - 1) * p.d_var ELSE 0 END AS ss_d,
           coalesce(max(d.df), 0) + greatest(p.k - 1, 0) AS df_d, coalesce(max(r.ss), 0) AS ss_r,
           coalesce(max(r.df), 0) AS df_r, max(b.v) AS var_0, max(b.n) - 1 AS df_0
    FROM paired_runs p
    LEFT JOIN (SELECT campaign_id, sum((n - 1) * v) AS ss, sum(n - 1) AS df FROM diff_groups WHERE n >= 2
               GROUP BY ALL) d ON d.campaign_id = p.campaign_id
    LEFT JOIN (SELECT campaign_id, sum((n - 1) * v) AS ss, sum(n - 1) AS df FROM replicate_groups WHERE n >= 2
               GROUP BY ALL) r ON r.campaign_id = p.campaign_id
    LEFT JOIN (SELECT f.campaign_id, count(*) AS n, var_samp(f.value) AS v FROM fin f
               JOIN starts s ON s.campaign_id = f.campaign_id AND f.candidate_id = s.baseline_candidate_id
               GROUP BY ALL) b ON b.campaign_id = p.campaign_id
    GROUP BY p.campaign_id, p.candidate_id, p.k, p.d_var
), paired_noise AS (  -- as stats.pooled_variance
    SELECT p.*, CASE WHEN o.df_d < p.min_diff_df THEN (o.ss_d + 2 * o.ss_r) / nullif(o.df_d + o.df_r, 0)
                     ELSE o.ss_d / nullif(o.df_d, 0) END AS var_d,
           CASE WHEN o.df_d < p.min_diff_df THEN o.df_d + o.df_r ELSE o.df_d END AS df,
           o.var_0, coalesce(o.df_0, 0) AS df_0, p.sign * p.d_mean / abs(p.m0) AS rel
    FROM paired_runs p JOIN pools o ON o.campaign_id = p.campaign_id AND o.candidate_id = p.candidate_id
    WHERE p.m0 <> 0
), paired_held AS (  -- as core/holdback.measure_paired: t on the pooled variance, the delta method's relative
    SELECT campaign_id, candidate_id, struct_pack(
               effect := sign * d_mean,
               half := CASE WHEN df > 0 THEN {_t975('df::DOUBLE')} * sqrt(var_d / k) END,
               rel := rel,
               rel_half := CASE WHEN df > 0 AND df_0 > 0 THEN {_t975('least(df, df_0)::DOUBLE')}
                   * sqrt(greatest(var_d + sign * sign(m0) * rel * least(var_d, 2 * sqrt(var_d * var_0))
                                   + rel ^ 2 * var_0, 0) / (k * m0 ^ 2)) END,
               method := 'holdback: incumbent vs baseline on ' || k || ' fresh seed(s) each, paired; t with the '
                         || 'campaign''s pooled paired variance (' || df || ' df), relative by the delta method'
           ) AS hb
    FROM paired_noise
), held_arms AS (  -- (mean, variance of the mean) of each arm, pooled over the windows: as core/holdback.py
    SELECT *,
           CASE WHEN kind = 'proportion' AND counted = windows AND ct > 0 AND it > 0 THEN cs / ct
                WHEN sum_key IS NOT NULL AND summed = windows AND nc > 0 AND ni > 0 THEN sc / nc END AS m1,
           CASE WHEN kind = 'proportion' AND counted = windows AND ct > 0 AND it > 0 THEN is_ / it
                WHEN sum_key IS NOT NULL AND summed = windows AND nc > 0 AND ni > 0 THEN si / ni END AS m0,
           CASE WHEN kind = 'proportion' AND counted = windows AND ct > 0 AND it > 0 THEN (cs / ct) * (1 - cs / ct) / ct
                WHEN sum_key IS NOT NULL AND summed = windows AND nc > 0 AND ni > 0 THEN
                    greatest(ssc / nc - (sc / nc) ^ 2, 0) * nc / greatest(nc - 1, 1) / nc END AS v1,
           CASE WHEN kind = 'proportion' AND counted = windows AND ct > 0 AND it > 0 THEN (is_ / it) * (1 - is_ / it) / it
                WHEN sum_key IS NOT NULL AND summed = windows AND nc > 0 AND ni > 0 THEN
                    greatest(ssi / ni - (si / ni) ^ 2, 0) * ni / greatest(ni - 1, 1) / ni END AS v0,
           {_t975('(rated - 1)::DOUBLE')} AS t_rated  -- once: `held` uses it four times
    FROM held_runs
), held AS (  -- (effect, half, relative, relative half, method): the delta method on pooled units, else t on runs
    SELECT campaign_id, candidate_id,
           CASE WHEN m1 IS NOT NULL AND m0 <> 0 THEN struct_pack(
                    effect := sign * (m1 - m0),
                    half := greatest({_Z975} * sqrt(v1 + v0),
                                     CASE WHEN rated >= 3 THEN t_rated * wd_sd / sqrt(rated) END),
                    rel := sign * (m1 - m0) / m0,
                    rel_half := greatest({_Z975} * sqrt(v1 / m0 ^ 2 + m1 ^ 2 * v0 / m0 ^ 4),
                                         CASE WHEN rated >= 3 THEN t_rated * rel_sd / sqrt(rated) END),
                    method := 'holdback: incumbent vs baseline in ' || windows
                              || ' same-window run(s), pooled units, delta method'
                              || CASE WHEN rated >= 3 THEN ', widened to the spread between windows' ELSE '' END)
                WHEN m1 IS NULL AND rated >= 2 THEN struct_pack(
                    effect := sign * wd_mean, half := t_rated * wd_sd / sqrt(rated),
                    rel := sign * rel_mean, rel_half := t_rated * rel_sd / sqrt(rated),
                    method := 'holdback: incumbent vs baseline in ' || rated || ' same-window run(s), t over runs')
           END AS hb
    FROM held_arms
    UNION ALL
    SELECT campaign_id, candidate_id, hb FROM paired_held
), news AS (  -- per accepted incumbent and seed: its runs as incumbent after its selection
    SELECT h.campaign_id, h.seq, p.seed, count(*) AS n, sum(p.value) AS s, sum(p.value * p.value) AS q
    FROM history h JOIN pool p ON p.campaign_id = h.campaign_id AND p.candidate_id = h.candidate_id
    WHERE h.hypothesis_id IS NOT NULL AND p.role = 'incumbent' AND p.seed >= h.seed_base
    GROUP BY h.campaign_id, h.seq, p.seed
), olds AS (  -- per campaign and seed: the baseline's runs, whatever their role
    SELECT campaign_id, seed, count(*) AS n, sum(value) AS s, sum(value * value) AS q
    FROM pool WHERE of_baseline GROUP BY campaign_id, seed
), compared AS (  -- as core/effects.compare: its runs after selection vs the baseline's, paired or Welch
    SELECT n.campaign_id, n.seq, count(o.seed) AS matched, avg(n.s / n.n - o.s / o.n) AS pair_mean,
           stddev_samp(n.s / n.n - o.s / o.n) AS pair_sd, sum(n.n) AS na, sum(n.s) AS sa, sum(n.q) AS qa,
           any_value(b.nb) AS nb, any_value(b.sb) AS sb, any_value(b.qb) AS qb
    FROM news n
    JOIN (SELECT campaign_id, sum(n) AS nb, sum(s) AS sb, sum(q) AS qb FROM olds GROUP BY campaign_id) b
        ON b.campaign_id = n.campaign_id
    LEFT JOIN olds o ON o.campaign_id = n.campaign_id AND o.seed = n.seed
    GROUP BY n.campaign_id, n.seq
), scored AS (  -- the baseline's value from its own history row(s), so `fresh` is read once
    SELECT h.campaign_id, h.seq, h.candidate_id, h.hypothesis_id, h.since, s.direction, f.value, f.n,
           max(f.value) FILTER (WHERE h.candidate_id = s.baseline_candidate_id)
               OVER (PARTITION BY h.campaign_id) AS baseline_value,
           max(h.seq) OVER (PARTITION BY h.campaign_id) AS last_seq,
           CASE WHEN s.design <> 'concurrent' THEN NULL WHEN h.hypothesis_id IS NULL THEN 0.0
                WHEN s.direction = 'minimize' THEN -f.window_diff ELSE f.window_diff END AS step,
           s.design, s.max_pairs, t.t.effect AS c_effect, t.n AS c_n, t.t.method AS c_method,
           t.t.se * CASE WHEN t.t.df IS NULL THEN {_Z975} ELSE {_t975('t.t.df')} END AS c_half,
           c.matched, c.pair_mean, c.pair_sd, c.na, c.sa, c.qa, c.nb, c.sb, c.qb, hd.hb
    FROM history h
    JOIN starts s ON s.campaign_id = h.campaign_id
    LEFT JOIN fresh f ON f.campaign_id = h.campaign_id AND f.candidate_id = h.candidate_id
    LEFT JOIN tested t ON t.campaign_id = h.campaign_id AND t.seq = h.seq
    LEFT JOIN compared c ON c.campaign_id = h.campaign_id AND c.seq = h.seq
    LEFT JOIN held hd ON hd.campaign_id = h.campaign_id AND hd.candidate_id = h.candidate_id
                         AND h.hypothesis_id IS NOT NULL
), chained AS (  -- concurrent designs: the confirmed effects added up from the baseline, variances added
    SELECT *, CASE WHEN direction = 'minimize' THEN -1 ELSE 1 END AS sign,
           CASE WHEN hypothesis_id IS NOT NULL AND design = 'concurrent'
                     AND count(*) OVER upto - 1 = count(c_half) OVER upto THEN struct_pack(
                effect := sum(c_effect) OVER upto, half := {_Z975} * sqrt(sum((c_half / {_Z975}) ^ 2) OVER upto),
                method := CASE WHEN count(c_half) OVER upto = 1 THEN c_method
                               ELSE 'sum of the ' || count(c_half) OVER upto || ' accepted changes'' effects, each '
                                    || 'confirmed on its own fresh same-window A/B runs' END) END AS chain,
           (sa / na - sb / nb) AS welch_diff,
           (qa - sa * sa / na) / (na - 1) AS va, (qb - sb * sb / nb) / (nb - 1) AS vb
    FROM scored
    WINDOW upto AS (PARTITION BY campaign_id ORDER BY seq)
), improved AS (
    SELECT *,
           CASE WHEN hypothesis_id IS NULL THEN NULL
                -- independent designs with a holdback: its pairs only (NULL: not measured yet)
                WHEN design <> 'concurrent' AND max_pairs > 0 THEN CASE WHEN hb IS NOT NULL THEN struct_pack(
                    effect := hb.effect, half := hb.half, method := hb.method) END
                -- as core/effects.improvement: the holdback unless the chain's interval is the narrower
                WHEN hb.half IS NOT NULL AND (chain.half IS NULL OR hb.half <= chain.half) THEN struct_pack(
                    effect := hb.effect, half := hb.half, method := hb.method)
                WHEN chain IS NOT NULL THEN struct_pack(effect := chain.effect, half := chain.half,
                                                         method := chain.method)
                WHEN na > 0 AND nb > 0 AND matched >= 2 THEN struct_pack(
                    effect := sign * pair_mean, half := {_t975('(matched - 1)::DOUBLE')} * pair_sd / sqrt(matched),
                    method := 'the incumbent''s runs after selection vs the baseline''s; paired t on '
                              || matched || ' matched seeds')
                WHEN na > 0 AND nb > 0 THEN struct_pack(
                    effect := sign * welch_diff,
                    half := CASE WHEN na < 2 OR nb < 2 THEN NULL
                                 WHEN greatest(va, 0) + greatest(vb, 0) = 0 THEN 0.0  -- no spread at all
                                 ELSE {_t975('(greatest(va, 0) / na + greatest(vb, 0) / nb) ^ 2 / ((greatest(va, 0) / na) ^ 2 / (na - 1) + (greatest(vb, 0) / nb) ^ 2 / (nb - 1))')}
                                      * sqrt(greatest(va, 0) / na + greatest(vb, 0) / nb) END,
                    method := 'the incumbent''s runs after selection vs the baseline''s; Welch t, n=' || na
                              || ' vs n=' || nb) END AS gain
    FROM chained
)
SELECT campaign_id, candidate_id, hypothesis_id, since, value, coalesce(n, 0) AS n,
       CASE WHEN direction = 'minimize' THEN baseline_value - value ELSE value - baseline_value END
           AS improvement_over_baseline,
       seq = last_seq AS is_current,
       CASE WHEN hypothesis_id IS NOT NULL THEN step END AS same_window_effect,
       CASE WHEN count(*) OVER upto = count(step) OVER upto THEN sum(step) OVER upto END AS same_window_improvement,
       c_effect AS confirmed_effect, c_effect - c_half AS confirmed_ci_low, c_effect + c_half AS confirmed_ci_high,
       CASE WHEN c_effect IS NOT NULL THEN c_n END AS confirmed_n, c_method AS confirmed_method,
       gain.effect AS improvement, gain.effect - gain.half AS improvement_ci_low,
       gain.effect + gain.half AS improvement_ci_high, gain.method AS improvement_method,
       CASE WHEN gain.method LIKE 'holdback:%' THEN hb.rel END AS improvement_rel,
       CASE WHEN gain.method LIKE 'holdback:%' THEN hb.rel - hb.rel_half END AS improvement_rel_ci_low,
       CASE WHEN gain.method LIKE 'holdback:%' THEN hb.rel + hb.rel_half END AS improvement_rel_ci_high
FROM improved
WINDOW upto AS (PARTITION BY campaign_id ORDER BY seq)
""",
    "campaigns": f"""
WITH starts AS (
    SELECT campaign_id, payload->>'domain' AS domain, payload->'metric'->>'name' AS metric,
           payload->'metric'->>'direction' AS direction, recorded_at AS started_at,
           payload->>'baseline_candidate_id' AS baseline_candidate_id
    FROM events WHERE type = 'CampaignStarted'
    QUALIFY row_number() OVER (PARTITION BY campaign_id ORDER BY seq DESC) = 1
), life AS (
    SELECT campaign_id, arg_max(type, seq) AS last_type,
           max(recorded_at) FILTER (WHERE type = 'CampaignFinished') AS finished_at,
           arg_max(payload->>'reason', seq) FILTER (WHERE type = 'CampaignFinished') AS finish_reason
    FROM {_of_types('CampaignStarted', 'CampaignPaused', 'CampaignResumed', 'CampaignFinished')}
    GROUP BY campaign_id
), counts AS (
    SELECT campaign_id, count(*) FILTER (WHERE type = 'HypothesisProposed') AS hypotheses,
           count(*) FILTER (WHERE type = 'VerdictReached' AND decision = 'accept') AS accepted
    FROM hypothesis_events WHERE type = 'HypothesisProposed' OR type = 'VerdictReached' GROUP BY campaign_id
), current AS (  -- the incumbent now, as `incumbents` has it
    {_CURRENT}
), perf AS (  -- one pass over `runs`: the baseline's mean, and the current incumbent's mean as incumbent
    SELECT s.campaign_id,
           avg(r.value) FILTER (WHERE r.candidate_id = s.baseline_candidate_id) AS baseline_value,
           avg(r.value) FILTER (WHERE r.candidate_id = c.candidate_id AND r.role = 'incumbent') AS best_value
    FROM starts s
    JOIN current c ON c.campaign_id = s.campaign_id
    JOIN runs r ON r.campaign_id = s.campaign_id
    WHERE r.status = 'finished' AND (r.candidate_id = s.baseline_candidate_id OR r.candidate_id = c.candidate_id)
    GROUP BY s.campaign_id
)
SELECT s.campaign_id, s.domain, s.metric, s.direction,
       CASE l.last_type WHEN 'CampaignFinished' THEN 'finished' WHEN 'CampaignPaused' THEN 'paused'
            ELSE 'running' END AS status,
       s.started_at, CASE WHEN l.last_type = 'CampaignFinished' THEN l.finished_at END AS finished_at,
       CASE WHEN l.last_type = 'CampaignFinished' THEN l.finish_reason END AS finish_reason,
       s.baseline_candidate_id, p.baseline_value, p.best_value,
       coalesce(c.hypotheses, 0) AS hypotheses, coalesce(c.accepted, 0) AS accepted
FROM starts s
LEFT JOIN life l ON l.campaign_id = s.campaign_id
LEFT JOIN counts c ON c.campaign_id = s.campaign_id
LEFT JOIN perf p ON p.campaign_id = s.campaign_id
""",
    "llm_calls": f"""
SELECT l.call_id AS call_id, campaign_id, l.agent AS agent, l.model AS model, l.purpose AS purpose,
       l.prompt_tokens AS prompt_tokens, l.completion_tokens AS completion_tokens, l.cost_usd AS cost_usd,
       l.latency_s AS latency_s, l.ok AS ok, l.error AS error, recorded_at AS at, l.reasoning AS reasoning
FROM (SELECT campaign_id, recorded_at, json_transform(payload, '{_LLM_CALL}') AS l
      FROM events WHERE type = 'LLMCallCompleted')
""",
    "leaderboard": f"""
WITH agg AS (
    SELECT campaign_id, candidate_id, count(*) AS runs, avg(value) AS mean, stddev_samp(value) AS std
    FROM runs WHERE status = 'finished' GROUP BY ALL
), current AS (
    {_CURRENT}
), origin AS (
    SELECT campaign_id, candidate_id, arg_min(hypothesis_id, seq) AS hypothesis_id
    FROM hypothesis_events WHERE type = 'CandidateCreated' GROUP BY ALL
), scored AS (
    SELECT a.*, CASE WHEN a.runs >= 2 THEN
               (CASE WHEN a.runs - 1 <= 30 THEN {_T95}[a.runs - 1] ELSE 1.959964 + 2.372 / (a.runs - 1) END)
               * a.std / sqrt(a.runs) END AS half_width
    FROM agg a
)
SELECT a.campaign_id, a.candidate_id, a.runs, a.mean, a.std, a.mean - a.half_width AS ci_low,
       a.mean + a.half_width AS ci_high, coalesce(cur.candidate_id = a.candidate_id, false) AS is_incumbent,
       o.hypothesis_id
FROM scored a
LEFT JOIN current cur ON cur.campaign_id = a.campaign_id
LEFT JOIN origin o ON o.campaign_id = a.campaign_id AND o.candidate_id = a.candidate_id
""",
}

def views_version(con: duckdb.DuckDBPyConnection) -> int:
    """The views version recorded in the file (0 when it has none)."""
    rows = con.execute("SELECT max(value::INTEGER) FROM ledger_meta WHERE key = 'views_version'").fetchall()
    return int(rows[0][0] or 0) if rows else 0


def has_meta(con: duckdb.DuckDBPyConnection) -> bool:
    """Whether the file has a `ledger_meta` table (a ledger made by ledgerlab)."""
    sql = "SELECT count(*) FROM duckdb_tables() WHERE table_name = 'ledger_meta' AND database_name = current_database()"
    rows = con.execute(sql).fetchall()
    return bool(rows and rows[0][0])


def install(con: duckdb.DuckDBPyConnection) -> bool:
    """Create `events`, `ledger_meta`, the derived tables and the views if missing or older; True when views were made.

    The derived tables are completed first (storage/derived.py `backfill`), in the same transaction as the views
    that read them: a ledger from an older ledgerlab gets its typed rows and its new views together.
    """
    con.execute("BEGIN TRANSACTION")
    try:
        con.execute(EVENTS_DDL)
        con.execute(META_DDL)
        backfill(con)
        if views_version(con) >= VIEWS_VERSION:
            con.execute("COMMIT")
            return False
        for name, sql in VIEWS.items():  # in dependency order: runs before incumbents before campaigns
            con.execute(f"CREATE OR REPLACE VIEW {name} AS {sql}")
        con.execute("INSERT INTO ledger_meta (key, value) VALUES ('views_version', ?)", [str(VIEWS_VERSION)])
        con.execute("COMMIT")
        return True
    except Exception:
        con.execute("ROLLBACK")
        raise


# ------------------------------------------------------------------------------------------- docs

_CAMPAIGN, _HYP, _CAND = "the campaign's id", "the hypothesis's id", "the candidate's id (SHA-256 of its files)"
VIEW_DOCS: dict[str, tuple[str, dict[str, str]]] = {
    "campaigns": ("one row per campaign: what it optimizes, where it stands, how far it got", {
        "campaign_id": _CAMPAIGN, "domain": "the domain plug-in", "metric": "the primary metric's name",
        "direction": "minimize or maximize",
        "status": "running, paused or finished (from the latest lifecycle event)",
        "started_at": "when it started (UTC)", "finished_at": "when it finished (NULL unless finished)",
        "finish_reason": "why it finished (max_hypotheses, max_runs, time_limit, ...)",
        "baseline_candidate_id": "the starting artifact's candidate id",
        "baseline_value": "mean metric of the baseline's finished runs",
        "best_value": "the current incumbent's value (as in `incumbents`)",
        "hypotheses": "hypotheses proposed", "accepted": "hypotheses accepted",
    }),
    "hypotheses": ("one row per proposed change and its fate", {
        "hypothesis_id": _HYP, "campaign_id": _CAMPAIGN, "agent": "the agent that proposed it",
        "proposer": "the proposer (knobs, llm, ...)", "rationale": "why the proposer expects it to help",
        "parent_candidate_id": "the incumbent the patch was made against",
        "candidate_id": "the candidate the patch produced (NULL if it did not apply)",
        "diff": "the unified diff", "changes": "knob name -> new value, when known (JSON)",
        "status": "proposed, patch_rejected, testing, accepted or rejected",
        "reject_reason": "why the patch or the hypothesis was rejected",
        "proposed_at": "when it was proposed (UTC)", "decided_at": "when the verdict or patch rejection came",
        "built_on_hypothesis_id": "the accepted hypothesis whose candidate this one started from (NULL: baseline)",
    }),
    "runs": ("one row per run (its latest attempt): one candidate, one seed, one budget", {
        "run_id": "the run's id (kept when an interrupted run is re-run)", "campaign_id": _CAMPAIGN,
        "hypothesis_id": "the hypothesis it tests (NULL for incumbent replicates)", "candidate_id": _CAND,
        "role": "candidate (testing a hypothesis) or incumbent (fresh replicate of the incumbent)",
        "seed": "the replicate seed", "attempt": "1, or more when re-run after an interruption",
        "status": "running, finished, crashed, timeout, diverged or invalid",
        "value": "the primary metric (finished runs only)",
        "control_value": "the comparison arm's value in the same window (concurrent designs: the incumbent, "
                         "or in a factorial window the visitors without this change)",
        "metrics": "all metrics the run reported (JSON)", "control_metrics": "the control arm's metrics (JSON)",
        "error": "why it failed", "started_at": "when the latest attempt started (UTC)",
        "finished_at": "when it ended (UTC)", "duration_s": "wall time in seconds", "worker": "where it ran",
        "log_path": "its log file",
        "shared_window": "the id shared by the candidates' runs tested in one traffic window (A/B/n or "
                         "factorial; NULL: a run alone in its window)",
    }),
    "verdicts": ("one row per judge decision", {
        "hypothesis_id": _HYP, "campaign_id": _CAMPAIGN, "decision": "accept or reject",
        "reason": "the judge's reason (e.g. futility)", "test": "the statistical test used",
        "statistic": "the test statistic", "p_value": "the p-value", "effect": "estimated improvement, > 0 is better",
        "ci_low": "lower end of the effect's interval", "ci_high": "upper end of the effect's interval",
        "n_candidate": "candidate runs used", "n_incumbent": "incumbent runs used",
        "alpha_spent": "the significance level this test spent", "looks": "sequential looks taken",
        "details": "extras (JSON): alpha, ci_level, judge, guardrails: [{name, effect, effect_rel, ci_low, "
                   "ci_high, p_worse, harmed}], guardrail_veto: true when a guardrail turned an accept down",
        "decided_at": "when it was decided (UTC)",
    }),
    "incumbents": ("one row per incumbent in a campaign's history, the baseline first", {
        "campaign_id": _CAMPAIGN, "candidate_id": _CAND, "hypothesis_id": "the accepted hypothesis (NULL: baseline)",
        "since": "when it became the incumbent (UTC)",
        "value": "mean of its runs done as incumbent, after selection (no winner's curse)",
        "n": "how many such runs", "improvement_over_baseline": "value vs. the baseline's, > 0 is better",
        "is_current": "whether it is the incumbent now",
        "same_window_effect": "concurrent designs (A/B): the accepted change's effect on its fresh runs against "
                              "the incumbent it replaced, in the same traffic windows, > 0 is better",
        "same_window_improvement": "concurrent designs: the same-window effects added up from the baseline (NULL "
                                   "once one is unmeasured); what `ledgerlab status` shows, where windows differ "
                                   "more than their visitors show",
        "confirmed_effect": "the accepted change's effect on the runs made after its acceptance, never the ones "
                            "that selected it, > 0 is better (as `status` shows it): concurrent designs pool its "
                            "same-window runs against the incumbent it replaced, independent designs pair it with "
                            "that incumbent on the fresh seeds both ran (NULL: fewer than 2 such seeds yet)",
        "confirmed_ci_low": "lower end of its 95% interval (NULL: too few runs for one); for proportions the "
                            "Wald interval, which agrees with `status`'s to 0.1% of its width at thousands of "
                            "visitors per arm (a few % at a hundred)",
        "confirmed_ci_high": "upper end of its 95% interval",
        "confirmed_n": "the runs (concurrent) or matched seeds (independent) it rests on",
        "confirmed_method": "how it was computed, e.g. 'paired t on 2 fresh seeds'",
        "improvement": "its improvement over the baseline as `ledgerlab status` computes it for the incumbent, "
                       "> 0 is better (NULL for the baseline or when not measurable yet)",
        "improvement_ci_low": "lower end of its 95% interval (t quantiles within 0.1% of scipy's)",
        "improvement_ci_high": "upper end of its 95% interval",
        "improvement_method": "which computation it is: the holdback, runs no selection used (concurrent "
                              "designs: the incumbent vs the baseline in the same windows; independent designs: "
                              "both on the same fresh seeds, paired), or (concurrent) the confirmed effects "
                              "added up while that interval is the narrower, else (campaigns without a holdback) "
                              "its runs after selection vs the baseline's, paired on matched seeds or Welch; "
                              "NULL with `improvement`: not measured yet",
        "improvement_rel": "the holdback's improvement as a share of the baseline's value (> 0 is better; NULL "
                           "unless the improvement is the holdback's)",
        "improvement_rel_ci_low": "lower end of its 95% interval (delta method)",
        "improvement_rel_ci_high": "upper end of its 95% interval",
    }),
    "llm_calls": ("one row per language-model call", {
        "call_id": "the call's id", "campaign_id": _CAMPAIGN, "agent": "the calling agent", "model": "the model",
        "purpose": "what it was for (propose, ...)", "prompt_tokens": "input tokens",
        "completion_tokens": "output tokens", "cost_usd": "cost in USD (NULL when the price is unknown)",
        "latency_s": "seconds until the answer", "ok": "whether it succeeded", "error": "the error if not",
        "at": "when it completed (UTC)",
        "reasoning": "a reasoning model's thoughts before its answer (<think> block), kept out of the hypothesis",
    }),
    "leaderboard": ("one row per candidate with finished runs: mean and 95% t-interval of all its runs", {
        "campaign_id": _CAMPAIGN, "candidate_id": _CAND, "runs": "finished runs", "mean": "mean value",
        "std": "sample standard deviation", "ci_low": "95% t-interval low (t table to df 30, NULL if runs < 2)",
        "ci_high": "95% t-interval high", "is_incumbent": "whether it is the current incumbent",
        "hypothesis_id": "the hypothesis that created it (NULL: baseline)",
    }),
}
