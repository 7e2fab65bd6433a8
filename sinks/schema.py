"""The ClickHouse tables driftline writes, created idempotently at start-up.

Every table is a ``ReplacingMergeTree`` whose sorting key names one result exactly
(a window of a feature, a late message, a dead letter), so writing the same result again —
after a crash and replay, or because late data changed it — replaces the row instead of
adding one. Read with ``FINAL`` (or ``argMax(..., revision)``) to see each key once.

Of two rows of a key, the later write wins, in every table:

* ``revision`` is the row's write version (:mod:`driftline.sinks.write_version`):
  nanoseconds since the epoch when the row was written, strictly increasing per process.
  Never a Kafka offset: offsets restart (a recreated topic, the embedded broker's empty
  storage, another cluster), and rows written before with higher offsets would win.
  Rows written by older versions of driftline carry offsets, far below any write version,
  so they lose to every new row without a migration. Two workers writing one key during
  a rebalance: the later write wins where their clocks agree (NTP: milliseconds).
* Rows are deterministic given the log (a replay writes the same values), so which copy of
  a replay wins does not matter; the version matters where a key is written with new
  values: the same minutes again from a restarted log, a window's quality as labels come,
  a label correction. Which label is the later one is decided by the label join, from the
  labels' own ``label_revision`` (their place in the log), before anything is written.
* ``performance`` is versioned by ``updated_at``, the same kind of write clock in µs;
  ``references`` by ``published_at`` (the latest published profile is live); ``alerts``,
  ``predictions``, ``late_events`` and ``dead_letters`` have no version: the last insert
  of a key wins, which is the later write too.
"""

from __future__ import annotations

from driftline.models.windows.feature_windows import QUANTILE_LEVELS
from driftline.sinks.telemetry_schema import GPU_WINDOWS, HOST_WINDOWS

_QUANTILE_COLUMNS = [f"p{round(q * 100):02d}" for q in QUANTILE_LEVELS]


def quantile_columns() -> list[str]:
    """Names of the quantile columns of ``feature_windows``: p01, p05, ..., p99."""
    return list(_QUANTILE_COLUMNS)


def _quantile_ddl() -> str:
    return "\n".join(
        f"    {name} Nullable(Float64) COMMENT 'approximate {q:g} quantile of the non-missing "
        "values (1% relative error)',"
        for name, q in zip(_QUANTILE_COLUMNS, QUANTILE_LEVELS, strict=True)
    )


FEATURE_WINDOWS = f"""
CREATE TABLE IF NOT EXISTS {{db}}.feature_windows
(
    model LowCardinality(String) COMMENT 'model name, the Kafka message key',
    model_version LowCardinality(String) COMMENT 'model version the events were served by',
    feature LowCardinality(String) COMMENT 'feature name',
    kind Enum8('numeric' = 1, 'categorical' = 2) COMMENT 'numeric or categorical',
    window_start DateTime64(3, 'UTC') COMMENT 'event-time window start (inclusive)',
    window_end DateTime64(3, 'UTC') COMMENT 'event-time window end (exclusive)',
    count UInt64 COMMENT 'events in the window, missing and invalid values included',
    missing_count UInt64 COMMENT 'events whose value was null, absent or invalid',
    invalid_count UInt64 DEFAULT 0 COMMENT 'of missing_count: values of the wrong type',
    mean Nullable(Float64) COMMENT 'mean of non-missing values (numeric)',
    variance Nullable(Float64) COMMENT 'population variance (ddof=0) of non-missing values',
    min Nullable(Float64) COMMENT 'smallest non-missing value',
    max Nullable(Float64) COMMENT 'largest non-missing value',
{_quantile_ddl()}
    bin_edges Array(Float64) COMMENT 'histogram edges e0<e1<...; fixed per model, version, feature',
    bin_counts Array(UInt64) COMMENT 'counts [x<e0], [e0<=x<e1], ..., [x>=e_last]; add: sumForEach',
    fine_bin_edges Array(Float64) COMMENT 'percentile edges for KS and Wasserstein',
    fine_bin_counts Array(UInt64) COMMENT 'counts on fine_bin_edges, same layout as bin_counts',
    categories Array(String) COMMENT 'top categories by count (categorical)',
    category_counts Array(UInt64) COMMENT 'count of each entry of categories',
    other_count UInt64 COMMENT 'non-missing values outside the top categories',
    revision UInt64 COMMENT 'write version (ns since epoch): the latest write of a window wins',
    written_at DateTime64(3, 'UTC') DEFAULT now64(3) COMMENT 'when the row was written'
)
ENGINE = ReplacingMergeTree(revision)
PARTITION BY toYYYYMM(window_start)
ORDER BY (model, model_version, feature, window_start)
COMMENT 'Distribution of each feature per model, version and event-time window'
"""

LATE_EVENTS = """
CREATE TABLE IF NOT EXISTS {db}.late_events
(
    model LowCardinality(String) COMMENT 'model name',
    model_version LowCardinality(String) COMMENT 'model version',
    window_start DateTime64(3, 'UTC') COMMENT 'start of the window the events belonged to',
    source_partition UInt32 COMMENT 'Kafka partition of the message',
    source_offset UInt64 COMMENT 'Kafka offset of the message',
    late_events UInt64 COMMENT 'events of that message that came after their window closed',
    written_at DateTime64(3, 'UTC') DEFAULT now64(3) COMMENT 'when the row was written'
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(window_start)
ORDER BY (model, model_version, window_start, source_partition, source_offset)
COMMENT 'Events that arrived after their window had closed: counted here, not in feature_windows'
"""

DEAD_LETTERS = """
CREATE TABLE IF NOT EXISTS {db}.dead_letters
(
    source_topic LowCardinality(String) COMMENT 'topic the message came from',
    source_partition UInt32 COMMENT 'its partition',
    source_offset UInt64 COMMENT 'its offset',
    reason String COMMENT 'why it could not be processed',
    message_key String COMMENT 'its key, as text',
    message_bytes UInt64 COMMENT 'size of its value in bytes',
    written_at DateTime64(3, 'UTC') DEFAULT now64(3) COMMENT 'when the row was written'
)
ENGINE = ReplacingMergeTree
ORDER BY (source_topic, source_partition, source_offset)
COMMENT 'Messages that could not be processed; the message itself is on the dead-letter topic'
"""

REFERENCES = """
CREATE TABLE IF NOT EXISTS {db}.references
(
    model LowCardinality(String) COMMENT 'model name',
    model_version LowCardinality(String) COMMENT 'model version the profile describes',
    source Enum8('training' = 1, 'baseline' = 2) COMMENT 'training data, or first windows served',
    profile_id String COMMENT 'content hash of the profile; windows name the profile they used',
    created_at DateTime64(3, 'UTC') COMMENT 'when the profile was built',
    published_at DateTime64(3, 'UTC') COMMENT 'when it was published; the latest is live',
    features UInt32 COMMENT 'number of features in the profile',
    profile String CODEC(ZSTD(3)) COMMENT 'the profile as JSON (ReferenceProfile.to_json)'
)
ENGINE = ReplacingMergeTree(published_at)
ORDER BY (model, model_version)
COMMENT 'Reference profile of each model version; the live one is on the references topic'
"""

DRIFT_SCORES = """
CREATE TABLE IF NOT EXISTS {db}.drift_scores
(
    model LowCardinality(String) COMMENT 'model name',
    model_version LowCardinality(String) COMMENT 'model version',
    feature LowCardinality(String) COMMENT 'feature, or output.score / output.prediction',
    window_start DateTime64(3, 'UTC') COMMENT 'event-time window start (inclusive)',
    window_end DateTime64(3, 'UTC') COMMENT 'event-time window end (exclusive)',
    metric LowCardinality(String)
        COMMENT 'psi, js, wasserstein(_std), ks, chi2, unseen_share, share_change',
    value Float64 COMMENT 'the score (for ks and chi2: the test statistic)',
    p_value Nullable(Float64) COMMENT 'p-value of ks and chi2; NULL for effect sizes',
    error_bound Nullable(Float64) COMMENT 'the exact value lies within this of value',
    n_reference UInt64 COMMENT 'non-missing values in the reference',
    n_window UInt64 COMMENT 'non-missing values in the window',
    threshold Nullable(Float64) COMMENT 'the rule threshold the verdict used (q for tests)',
    verdict Enum8('ok' = 1, 'warning' = 2, 'critical' = 3, 'not_evaluated' = 4)
        COMMENT 'the rule verdict; not_evaluated below the minimum count or window number',
    reference_source Enum8('training' = 1, 'baseline' = 2) COMMENT 'what it was compared with',
    reference_id String COMMENT 'content hash of that reference profile',
    revision UInt64 COMMENT 'write version (ns since epoch): the latest write wins',
    written_at DateTime64(3, 'UTC') DEFAULT now64(3) COMMENT 'when the row was written',
    span_start DateTime64(3, 'UTC') DEFAULT window_start
        COMMENT 'first window scored: earlier when quiet windows were merged to min_count'
)
ENGINE = ReplacingMergeTree(revision)
PARTITION BY toYYYYMM(window_start)
ORDER BY (model, model_version, feature, metric, window_start)
COMMENT 'Drift of each feature per window against the version reference, one row per metric'
"""

ALERTS = """
CREATE TABLE IF NOT EXISTS {db}.alerts
(
    id String COMMENT 'incident id: stable across its open / escalated / resolved events',
    dedup_key String COMMENT 'what the incident is about: drift:model:version:feature:metric',
    state Enum8('open' = 1, 'escalated' = 2, 'resolved' = 3) COMMENT 'the state this row records',
    severity Enum8('warning' = 1, 'critical' = 2) COMMENT 'severity at that state',
    model LowCardinality(String) COMMENT 'model name',
    model_version LowCardinality(String) COMMENT 'model version',
    feature LowCardinality(String) COMMENT 'feature (or output) concerned',
    metric LowCardinality(String) COMMENT 'metric that crossed its threshold',
    value Float64 COMMENT 'its value in the window that changed the state',
    threshold Float64 COMMENT 'the threshold it was judged against',
    window_start DateTime64(3, 'UTC') COMMENT 'window that changed the state: start',
    window_end DateTime64(3, 'UTC') COMMENT 'window that changed the state: end',
    first_seen DateTime64(3, 'UTC') COMMENT 'start of the first bad window of the incident',
    last_seen DateTime64(3, 'UTC') COMMENT 'end of the latest bad window',
    summary String COMMENT 'one human-readable line',
    written_at DateTime64(3, 'UTC') DEFAULT now64(3) COMMENT 'when the row was written'
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(first_seen)
ORDER BY (model, dedup_key, first_seen, id, state)
COMMENT 'Alert events: one row per incident state change, the same JSON as the alerts topic'
"""

PREDICTIONS = """
CREATE TABLE IF NOT EXISTS {db}.predictions
(
    model LowCardinality(String) COMMENT 'model name',
    model_version LowCardinality(String) COMMENT 'model version',
    request_id String COMMENT 'joins the prediction with its label',
    event_time DateTime64(3, 'UTC') COMMENT 'prediction event time',
    prediction Nullable(String) COMMENT 'predicted class or value, as text',
    score Nullable(Float64) COMMENT 'score, if sent',
    probabilities Map(String, Float64) COMMENT 'class probabilities, if sent',
    written_at DateTime64(3, 'UTC') DEFAULT now64(3) COMMENT 'when the row was written'
)
ENGINE = ReplacingMergeTree
ORDER BY (model, request_id)
-- Kept by processing time, not event time, so a backfill of old events still joins.
TTL toDateTime(written_at) + INTERVAL {retention_days} DAY
COMMENT 'Predictions waiting for their label (kept a day past the longest label TTL)'
"""

WAITING_LABELS = """
CREATE TABLE IF NOT EXISTS {db}.waiting_labels
(
    model LowCardinality(String) COMMENT 'model name',
    request_id String COMMENT 'the prediction this label is for',
    event_time DateTime64(3, 'UTC') COMMENT 'label event time',
    label String COMMENT 'the label, as text',
    -- The join keeps the later label (by label_revision) and writes only that: the latest
    -- write of a request id is its latest label, also after the offsets restarted.
    revision UInt64 COMMENT 'write version (ns since epoch): the latest write wins',
    settled UInt8 COMMENT '1 once its prediction arrived: FINAL leaves it out',
    written_at DateTime64(3, 'UTC') DEFAULT now64(3) COMMENT 'when the row was written',
    -- DEFAULT revision: rows written before this column existed had their offset there.
    label_revision UInt64 DEFAULT revision
        COMMENT 'where the label is in the log: offset x 1e6 + position in its message'
)
ENGINE = ReplacingMergeTree(revision, settled)
ORDER BY (model, request_id)
-- Kept by processing time, not event time, so a backfill of old events still joins.
TTL toDateTime(written_at) + INTERVAL {retention_days} DAY
COMMENT 'Labels that arrived before their prediction'
"""

LABELED_PREDICTIONS = """
CREATE TABLE IF NOT EXISTS {db}.labeled_predictions
(
    model LowCardinality(String) COMMENT 'model name',
    model_version LowCardinality(String) COMMENT 'model version that made the prediction',
    window_start DateTime64(3, 'UTC') COMMENT 'window of the prediction event time',
    request_id String COMMENT 'request id',
    prediction_time DateTime64(3, 'UTC') COMMENT 'prediction event time',
    label_time DateTime64(3, 'UTC') COMMENT 'label event time',
    delay_seconds Float64 COMMENT 'label time - prediction time',
    prediction Nullable(String) COMMENT 'predicted class or value, as text',
    label String COMMENT 'true class or value, as text',
    score Nullable(Float64) COMMENT 'score, if sent',
    probabilities Map(String, Float64) COMMENT 'class probabilities, if sent',
    revision UInt64 COMMENT 'write version (ns since epoch): the latest write wins',
    expired UInt8 DEFAULT 0 COMMENT '1: the label came after the model TTL and was not counted',
    -- The join compares these to tell a correction (later in the log) from a replay.
    label_revision UInt64 DEFAULT revision
        COMMENT 'where the label is in the log: offset x 1e6 + position in its message'
)
ENGINE = ReplacingMergeTree(revision)
PARTITION BY toYYYYMM(window_start)
ORDER BY (model, model_version, window_start, request_id)
COMMENT 'Each labelled prediction once: duplicates rewrite it, corrections replace it'
"""

PERFORMANCE = """
CREATE TABLE IF NOT EXISTS {db}.performance
(
    model LowCardinality(String) COMMENT 'model name',
    model_version LowCardinality(String) COMMENT 'model version',
    window_start DateTime64(3, 'UTC') COMMENT 'window of the predictions event time: start',
    window_end DateTime64(3, 'UTC') COMMENT 'window end (exclusive)',
    task LowCardinality(String) COMMENT 'classification or regression',
    n_predicted Nullable(UInt64) COMMENT 'predictions in the window (NULL while it is open)',
    n_labeled UInt64 COMMENT 'predictions with a label (each request id once)',
    n_expired_labels UInt64 COMMENT 'labels that came after the model TTL (not counted)',
    coverage Nullable(Float64) COMMENT 'n_labeled / n_predicted',
    labels_final_at DateTime64(3, 'UTC') COMMENT 'window_end + label TTL: later labels expire',
    delay_p50_seconds Nullable(Float64) COMMENT 'median label delay (within one log bin)',
    delay_p90_seconds Nullable(Float64) COMMENT '90th percentile label delay',
    delay_p99_seconds Nullable(Float64) COMMENT '99th percentile label delay',
    delay_sum_seconds Float64 COMMENT 'sum of label delays: sum / n_labeled is the mean',
    delay_counts Array(Int64) COMMENT 'delays on log bins 1 s..30 days; sumForEach',
    accuracy Nullable(Float64) COMMENT 'share of right predictions (classification)',
    precision_macro Nullable(Float64) COMMENT 'mean over classes of tp / (tp + fp)',
    recall_macro Nullable(Float64) COMMENT 'mean over classes of tp / (tp + fn)',
    f1_macro Nullable(Float64) COMMENT 'mean over classes of 2tp / (2tp + fp + fn)',
    log_loss Nullable(Float64) COMMENT 'mean -log p(true class), where probabilities were sent',
    roc_auc Nullable(Float64) COMMENT 'ROC AUC (binary) or mean one-vs-rest, from histograms',
    ece Nullable(Float64) COMMENT 'expected calibration error over 10 confidence bins',
    precision Map(String, Float64) COMMENT 'per class: tp / (tp + fp)',
    recall Map(String, Float64) COMMENT 'per class: tp / (tp + fn)',
    f1 Map(String, Float64) COMMENT 'per class: 2tp / (2tp + fp + fn)',
    correct_count UInt64 COMMENT 'right predictions; add: sum',
    true_count Map(String, UInt64) COMMENT 'labels per class; add: sumMap',
    predicted_count Map(String, UInt64) COMMENT 'predictions per predicted class; add: sumMap',
    true_positive Map(String, UInt64) COMMENT 'right predictions per class; add: sumMap',
    confusion Map(String, UInt64) COMMENT 'counts keyed "true -> predicted"; add: sumMap',
    positive_class String COMMENT 'class a bare score is the probability of',
    log_loss_sum Float64 COMMENT 'sum of -log p(true class); add: sum',
    log_loss_count UInt64 COMMENT 'rows in log_loss_sum; add: sum',
    score_positive Array(UInt64) COMMENT 'scores of positives on 50 bins of [0, 1]; sumForEach',
    score_negative Array(UInt64) COMMENT 'positive class: scores of negatives on the same bins',
    calibration_count Array(UInt64) COMMENT 'rows per confidence bin (10); sumForEach',
    calibration_correct Array(UInt64) COMMENT 'right predictions per confidence bin',
    calibration_confidence_sum Array(Float64) COMMENT 'sum of confidence per bin',
    mae Nullable(Float64) COMMENT 'mean absolute error (regression)',
    rmse Nullable(Float64) COMMENT 'root mean squared error',
    mape Nullable(Float64) COMMENT 'mean |error| / |label| over labels != 0 (a ratio, not %)',
    mean_error Nullable(Float64) COMMENT 'mean of prediction - label (bias)',
    r2 Nullable(Float64) COMMENT 'coefficient of determination',
    sum_error Float64 COMMENT 'sum of prediction - label; add: sum',
    sum_abs_error Float64 COMMENT 'sum of |prediction - label|',
    sum_sq_error Float64 COMMENT 'sum of (prediction - label)^2',
    sum_target Float64 COMMENT 'sum of labels',
    sum_sq_target Float64 COMMENT 'sum of squared labels',
    sum_ape Float64 COMMENT 'sum of |error| / |label| over labels != 0',
    ape_count UInt64 COMMENT 'labels != 0',
    updated_at DateTime64(6, 'UTC') COMMENT 'when computed: the latest row of a window wins'
)
ENGINE = ReplacingMergeTree(updated_at)
PARTITION BY toYYYYMM(window_start)
ORDER BY (model, model_version, window_start)
COMMENT 'Model quality per prediction window, rewritten as labels arrive: read with FINAL'
"""

SERVICE_WINDOWS = """
CREATE TABLE IF NOT EXISTS {db}.service_windows
(
    model LowCardinality(String) COMMENT 'model name',
    model_version LowCardinality(String) COMMENT 'model version',
    window_start DateTime64(3, 'UTC') COMMENT 'event-time window start',
    window_end DateTime64(3, 'UTC') COMMENT 'window end (exclusive)',
    requests UInt64 COMMENT 'predictions served in the window',
    throughput_per_s Float64 COMMENT 'requests / window length in seconds',
    latency_count UInt64 COMMENT 'requests that reported latency_ms',
    latency_mean_ms Nullable(Float64) COMMENT 'mean latency',
    latency_p50_ms Nullable(Float64) COMMENT 'median latency (sketch, 1 % relative error)',
    latency_p95_ms Nullable(Float64) COMMENT '95th percentile latency',
    latency_p99_ms Nullable(Float64) COMMENT '99th percentile latency',
    latency_max_ms Nullable(Float64) COMMENT 'largest latency',
    status_counts Map(String, UInt64) COMMENT 'requests per status; add: sumMap',
    errors UInt64 COMMENT 'requests whose status is not ok/success/2xx',
    error_rate Nullable(Float64) COMMENT 'errors / requests with a status',
    revision UInt64 COMMENT 'write version (ns since epoch): the latest write wins'
)
ENGINE = ReplacingMergeTree(revision)
PARTITION BY toYYYYMM(window_start)
ORDER BY (model, model_version, window_start)
COMMENT 'The serving service per model version and window: throughput, latency, errors'
"""

DATA_QUALITY = """
CREATE TABLE IF NOT EXISTS {db}.data_quality
(
    model LowCardinality(String) COMMENT 'model name',
    model_version LowCardinality(String) COMMENT 'model version',
    feature LowCardinality(String) COMMENT 'feature name (output.*, service.*: outputs, service)',
    window_start DateTime64(3, 'UTC') COMMENT 'event-time window start',
    window_end DateTime64(3, 'UTC') COMMENT 'window end (exclusive)',
    check LowCardinality(String) COMMENT 'the check (see the README): invalid_share, absent, ...',
    value Float64 COMMENT 'what the rules judge: observed, or observed - expected (increases)',
    observed Float64 COMMENT 'affected / events',
    expected Nullable(Float64) COMMENT 'the reference share (missing, out of range)',
    events UInt64 COMMENT 'window events, or values present (range): add with sum',
    affected UInt64 COMMENT 'of those, with the problem: sum(affected) / sum(events) any range',
    threshold Nullable(Float64) COMMENT 'the bound crossed (the lowest when ok)',
    verdict Enum8('ok' = 1, 'warning' = 2, 'critical' = 3, 'not_evaluated' = 4)
        COMMENT 'the rules verdict',
    reference_source LowCardinality(String) COMMENT 'training or baseline; empty without one',
    reference_id String COMMENT 'profile_id of the reference compared with',
    revision UInt64 COMMENT 'write version (ns since epoch): the latest write wins'
)
ENGINE = ReplacingMergeTree(revision)
PARTITION BY toYYYYMM(window_start)
ORDER BY (model, model_version, feature, window_start, check)
COMMENT 'Data quality per feature and window: invalid, missing, out of range, absent, unexpected'
"""

OUTCOME_REPORTS = """
CREATE TABLE IF NOT EXISTS {db}.outcome_reports
(
    model LowCardinality(String) COMMENT 'model name',
    model_version LowCardinality(String) COMMENT 'model version that made the prediction',
    window_start DateTime64(3, 'UTC') COMMENT 'window of the prediction event time',
    outcome LowCardinality(String) COMMENT 'outcome name: converted, revenue, ...',
    request_id String COMMENT 'request id',
    value Float64 COMMENT 'the outcome (booleans: 1 or 0)',
    prediction_time DateTime64(3, 'UTC') COMMENT 'prediction event time',
    outcome_time DateTime64(3, 'UTC') COMMENT 'outcome event time',
    delay_seconds Float64 COMMENT 'outcome time - prediction time',
    expired UInt8 COMMENT '1: came after the model outcome TTL and was not counted',
    outcome_revision UInt64
        COMMENT 'where the report is in the log: offset x 1e6 + position in its message',
    revision UInt64 COMMENT 'write version (ns since epoch): the latest write wins'
)
ENGINE = ReplacingMergeTree(revision)
PARTITION BY toYYYYMM(window_start)
ORDER BY (model, model_version, window_start, outcome, request_id)
COMMENT 'Each request outcome once: a repeat rewrites it, a later different value replaces it'
"""

WAITING_OUTCOMES = """
CREATE TABLE IF NOT EXISTS {db}.waiting_outcomes
(
    model LowCardinality(String) COMMENT 'model name',
    request_id String COMMENT 'the prediction this outcome is for',
    outcome LowCardinality(String) COMMENT 'outcome name',
    event_time DateTime64(3, 'UTC') COMMENT 'outcome event time',
    value Float64 COMMENT 'the outcome',
    outcome_revision UInt64 COMMENT 'where the report is in the log',
    settled UInt8 COMMENT '1 once its prediction arrived: FINAL leaves it out',
    revision UInt64 COMMENT 'write version (ns since epoch): the latest write wins',
    written_at DateTime64(3, 'UTC') DEFAULT now64(3) COMMENT 'when the row was written'
)
ENGINE = ReplacingMergeTree(revision, settled)
ORDER BY (model, request_id, outcome)
TTL toDateTime(written_at) + INTERVAL {retention_days} DAY
COMMENT 'Outcomes that arrived before their prediction'
"""

OUTCOMES = """
CREATE TABLE IF NOT EXISTS {db}.outcomes
(
    model LowCardinality(String) COMMENT 'model name',
    model_version LowCardinality(String) COMMENT 'model version',
    window_start DateTime64(3, 'UTC') COMMENT 'window of the predictions event time: start',
    window_end DateTime64(3, 'UTC') COMMENT 'window end (exclusive)',
    outcome LowCardinality(String) COMMENT 'outcome name',
    n_predicted Nullable(UInt64) COMMENT 'predictions in the window (NULL while it is open)',
    n_reported UInt64 COMMENT 'predictions that reported this outcome; add: sum',
    n_expired UInt64 COMMENT 'reports after the outcome TTL (not counted)',
    total Float64 COMMENT 'sum of the outcome; add: sum. Per prediction: total / n_predicted',
    sum_squares Float64 COMMENT 'sum of squared values (variance); add: sum',
    positive UInt64 COMMENT 'reports with a value other than 0 (true); add: sum',
    mean Nullable(Float64) COMMENT 'total / n_reported: the mean where reported',
    per_prediction Nullable(Float64) COMMENT 'total / n_predicted: unreported counts as 0',
    rate Nullable(Float64) COMMENT 'positive / n_predicted: e.g. the conversion rate',
    delay_sum_seconds Float64 COMMENT 'sum of outcome delays; / n_reported is the mean',
    outcomes_final_at DateTime64(3, 'UTC') COMMENT 'window_end + outcome TTL: later reports expire',
    updated_at DateTime64(6, 'UTC') COMMENT 'when computed: the latest row of a window wins'
)
ENGINE = ReplacingMergeTree(updated_at)
PARTITION BY toYYYYMM(window_start)
ORDER BY (model, model_version, window_start, outcome)
COMMENT 'Business outcomes per model version and prediction window, rewritten as reports come'
"""

OUTCOME_COMPARISONS = """
CREATE TABLE IF NOT EXISTS {db}.outcome_comparisons
(
    model LowCardinality(String) COMMENT 'model name',
    model_version LowCardinality(String) COMMENT 'the version judged',
    against LowCardinality(String)
        COMMENT 'baseline: its own first windows; champion: the champion version, same windows',
    against_version LowCardinality(String) COMMENT 'the champion (the version itself for baseline)',
    outcome LowCardinality(String) COMMENT 'outcome name',
    window_start DateTime64(3, 'UTC') COMMENT 'the window judged',
    window_end DateTime64(3, 'UTC') COMMENT 'window end (exclusive)',
    span_start DateTime64(3, 'UTC') COMMENT 'champion: first window of the running comparison',
    windows UInt32 COMMENT 'windows in the comparison (1 for baseline)',
    n UInt64 COMMENT 'predictions of the version judged',
    mean Float64 COMMENT 'its outcome per prediction',
    against_n UInt64 COMMENT 'predictions of the baseline or champion',
    against_mean Float64 COMMENT 'their outcome per prediction',
    difference Float64 COMMENT 'mean - against_mean',
    difference_low Nullable(Float64) COMMENT 'confidence interval of the difference: low',
    difference_high Nullable(Float64) COMMENT 'and high (champion: valid at every look)',
    relative_change Nullable(Float64) COMMENT 'difference / |against_mean|',
    p_value Float64 COMMENT 'baseline: two-sided z-test; champion: always-valid p-value',
    verdict Enum8('ok' = 1, 'warning' = 2, 'critical' = 3, 'not_evaluated' = 4)
        COMMENT 'the rules verdict',
    revision UInt64 COMMENT 'write version (ns since epoch): the latest write wins'
)
ENGINE = ReplacingMergeTree(revision)
PARTITION BY toYYYYMM(window_start)
ORDER BY (model, outcome, model_version, against, window_start)
COMMENT 'Each version outcome judged per window: against its baseline and its champion'
"""

MODEL_VERSIONS = """
CREATE TABLE IF NOT EXISTS {db}.model_versions
(
    model LowCardinality(String) COMMENT 'model name',
    model_version LowCardinality(String) COMMENT 'model version',
    created_at DateTime64(3, 'UTC') COMMENT 'when it was trained',
    training_run_id String COMMENT 'the training run (e.g. its Airflow run id)',
    code_revision String COMMENT 'the code it was trained with',
    training_data String COMMENT 'what it was trained on',
    reference_profile_id String COMMENT 'profile_id of its reference profile',
    parameters Map(String, String) COMMENT 'training parameters',
    training_metrics Map(String, Float64) COMMENT 'training metrics',
    description String COMMENT 'free text',
    revision UInt64 COMMENT 'write version (ns since epoch): the latest write wins'
)
ENGINE = ReplacingMergeTree(revision)
ORDER BY (model, model_version)
COMMENT 'Registered model versions (driftline registry version): join on model, model_version'
"""

DEPLOYMENTS = """
CREATE TABLE IF NOT EXISTS {db}.deployments
(
    model LowCardinality(String) COMMENT 'model name',
    model_version LowCardinality(String) COMMENT 'model version',
    at DateTime64(3, 'UTC') COMMENT 'when it happened',
    event LowCardinality(String) COMMENT 'deployed, rolled_back or retired',
    traffic_share Float64 COMMENT 'share of the model traffic it serves from then on',
    environment String COMMENT 'e.g. prod',
    note String COMMENT 'free text',
    revision UInt64 COMMENT 'write version (ns since epoch): the latest write wins'
)
ENGINE = ReplacingMergeTree(revision)
ORDER BY (model, at, model_version, event)
COMMENT 'Deployment events of model versions (driftline registry deploy)'
"""

RETRAINING_REQUESTS = """
CREATE TABLE IF NOT EXISTS {db}.retraining_requests
(
    id String COMMENT 'one per incident: a replay makes the same id',
    model LowCardinality(String) COMMENT 'model name',
    model_version LowCardinality(String) COMMENT 'the version whose incident asked',
    requested_at DateTime64(3, 'UTC') COMMENT 'when the request was made',
    incident_id String COMMENT 'the alert id of the incident',
    dedup_key String COMMENT 'the incident key: category:model:version:feature[:metric]',
    window_start DateTime64(3, 'UTC') COMMENT 'the incident first bad window',
    window_end DateTime64(3, 'UTC') COMMENT 'the end of its last bad window when asked',
    label_coverage Nullable(Float64) COMMENT 'labelled share of its predictions over the incident',
    request String COMMENT 'the whole request JSON, as on the retraining topic'
)
ENGINE = ReplacingMergeTree
ORDER BY (model, model_version, id)
COMMENT 'Retraining requests made by the retraining policy (one per incident)'
"""

PIPELINE_RUNS = """
CREATE TABLE IF NOT EXISTS {db}.pipeline_runs
(
    job_namespace LowCardinality(String) COMMENT 'OpenLineage job namespace',
    job_name String COMMENT 'OpenLineage job name',
    run_id String COMMENT 'the run',
    state LowCardinality(String) COMMENT 'RUNNING, COMPLETE, FAIL, ABORT or OTHER: the latest',
    started_at Nullable(DateTime64(3, 'UTC')) COMMENT 'its START event time',
    ended_at Nullable(DateTime64(3, 'UTC')) COMMENT 'its COMPLETE, FAIL or ABORT event time',
    duration_seconds Nullable(Float64) COMMENT 'ended_at - started_at',
    parent_run_id String COMMENT 'the run that spawned it (a DAG run), if any',
    parent_job String COMMENT 'that run job: namespace/name',
    inputs Array(String) COMMENT 'datasets read: namespace/name',
    outputs Array(String) COMMENT 'datasets written: namespace/name',
    error_message String COMMENT 'the errorMessage facet of a failed run',
    event_time DateTime64(3, 'UTC') COMMENT 'the latest event of the run',
    revision UInt64 COMMENT 'write version (ns since epoch): the latest write wins'
)
ENGINE = ReplacingMergeTree(revision)
ORDER BY (job_namespace, job_name, run_id)
COMMENT 'Pipeline runs from OpenLineage run events: each run once, its latest state'
"""

PIPELINE_WINDOWS = """
CREATE TABLE IF NOT EXISTS {db}.pipeline_windows
(
    job String COMMENT 'namespace/name',
    window_start DateTime64(3, 'UTC') COMMENT 'event-time window start',
    window_end DateTime64(3, 'UTC') COMMENT 'window end (exclusive)',
    started UInt32 COMMENT 'runs started; add: sum',
    completed UInt32 COMMENT 'runs completed',
    failed UInt32 COMMENT 'runs failed or aborted',
    duration_sum_seconds Float64 COMMENT 'durations of the completed runs; / completed: mean',
    duration_max_seconds Nullable(Float64) COMMENT 'the longest completed run',
    last_start Nullable(DateTime64(3, 'UTC')) COMMENT 'the job latest START so far',
    last_success Nullable(DateTime64(3, 'UTC')) COMMENT 'the job latest COMPLETE so far',
    revision UInt64 COMMENT 'write version (ns since epoch): the latest write wins'
)
ENGINE = ReplacingMergeTree(revision)
ORDER BY (job, window_start)
COMMENT 'Pipeline runs per job and window of event time'
"""

_HOP_COLUMNS = """
    window_start DateTime64(3, 'UTC') COMMENT 'event-time window start (of the span starts)',
    window_end DateTime64(3, 'UTC') COMMENT 'window end (exclusive)',
    calls UInt64 COMMENT 'spans; add: sum',
    errors UInt64 COMMENT 'spans whose status is ERROR',
    error_rate Float64 COMMENT 'errors / calls',
    latency_mean_ms Nullable(Float64) COMMENT 'mean span duration',
    latency_p50_ms Nullable(Float64) COMMENT 'median span duration (1 % relative error)',
    latency_p95_ms Nullable(Float64) COMMENT '95th percentile',
    latency_p99_ms Nullable(Float64) COMMENT '99th percentile',"""

SERVICE_OPERATIONS = f"""
CREATE TABLE IF NOT EXISTS {{db}}.service_operations
(
    service LowCardinality(String) COMMENT 'the span resource service.name',
    operation String COMMENT 'span name of a SERVER, CONSUMER or root span',{_HOP_COLUMNS}
    revision UInt64 COMMENT 'write version (ns since epoch): the latest write wins'
)
ENGINE = ReplacingMergeTree(revision)
ORDER BY (service, operation, window_start)
COMMENT 'Per service, operation and window of OpenTelemetry spans: calls, errors, latency'
"""

SERVICE_CALLS = f"""
CREATE TABLE IF NOT EXISTS {{db}}.service_calls
(
    caller LowCardinality(String) COMMENT 'the calling service',
    callee LowCardinality(String) COMMENT 'peer.service, or the child span service',{_HOP_COLUMNS}
    baseline_p95_ms Nullable(Float64) COMMENT 'p95 of the hop first 5 windows of 20+ calls',
    baseline_error_rate Nullable(Float64) COMMENT 'error rate of those windows',
    latency_p95_ratio Nullable(Float64) COMMENT 'latency_p95_ms / baseline_p95_ms',
    slow_calls Nullable(UInt64) COMMENT 'calls slower than baseline_p95_ms (5 % expected)',
    revision UInt64 COMMENT 'write version (ns since epoch): the latest write wins'
)
ENGINE = ReplacingMergeTree(revision)
ORDER BY (caller, callee, window_start)
COMMENT 'Per call between services (a hop of a chain) and window: calls, errors, latency'
"""

TABLES = (FEATURE_WINDOWS, LATE_EVENTS, DEAD_LETTERS, REFERENCES, DRIFT_SCORES, ALERTS,
          PREDICTIONS, WAITING_LABELS, LABELED_PREDICTIONS, PERFORMANCE, SERVICE_WINDOWS,
          DATA_QUALITY, OUTCOME_REPORTS, WAITING_OUTCOMES, OUTCOMES, OUTCOME_COMPARISONS,
          MODEL_VERSIONS, DEPLOYMENTS, RETRAINING_REQUESTS, PIPELINE_RUNS, PIPELINE_WINDOWS,
          SERVICE_OPERATIONS, SERVICE_CALLS, GPU_WINDOWS, HOST_WINDOWS)


#: Columns added after a table was first released: existing tables get them on start-up.
ADDED_COLUMNS = (
    ("feature_windows", "fine_bin_edges Array(Float64) AFTER bin_counts"),
    ("feature_windows", "fine_bin_counts Array(UInt64) AFTER fine_bin_edges"),
    ("labeled_predictions", "expired UInt8 DEFAULT 0 AFTER revision"),
    ("waiting_labels", "label_revision UInt64 DEFAULT revision AFTER written_at"),
    ("labeled_predictions", "label_revision UInt64 DEFAULT revision AFTER expired"),
    ("drift_scores", "span_start DateTime64(3, 'UTC') DEFAULT window_start COMMENT 'first "
                     "window scored: earlier when quiet windows were merged to min_count'"),
    ("feature_windows", "invalid_count UInt64 DEFAULT 0 COMMENT 'of missing_count: values of "
                        "the wrong type' AFTER missing_count"),
)


def statements(database: str, retention_days: int = 8) -> list[str]:
    """DDL to run, in order, to create the database and every table if missing.

    ``retention_days``: how long (processing time) predictions and early labels wait for
    their other half; a day more than the longest label TTL. Existing tables get it too.
    """
    if not database.replace("_", "").isalnum():
        raise ValueError(f"ClickHouse database name {database!r} must be letters, digits and _")
    if retention_days < 1:
        raise ValueError(f"retention_days must be >= 1, got {retention_days}")
    return [f"CREATE DATABASE IF NOT EXISTS {database}",
            *(ddl.format(db=database, retention_days=retention_days).strip() for ddl in TABLES),
            *(f"ALTER TABLE {database}.{table} ADD COLUMN IF NOT EXISTS {column}"
              for table, column in ADDED_COLUMNS),
            # Only new parts get the changed TTL at once; old ones on their next merge.
            *(f"ALTER TABLE {database}.{table} MODIFY TTL toDateTime(written_at) + "
              f"INTERVAL {retention_days} DAY SETTINGS materialize_ttl_after_modify = 0"
              for table in ("predictions", "waiting_labels", "waiting_outcomes"))]
