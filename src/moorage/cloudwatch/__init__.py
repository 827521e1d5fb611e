"""CloudWatch for moorage's own metrics: their history, alarms over it, and the API that serves both.

The interface other rooms code against (kept stable; everything else here is private):

- `history.MetricHistory` — the metric history store (its own SQLite file). `query(MetricQuery)` answers
  one statistic of one metric over a time range in periods (what the web console charts), and
  `list_metrics()` says which metrics have data. Blocking calls: run them on a thread
  (`CloudWatchService.run`), never on the event loop.
- `alarms.AlarmStore.states(names)` — each named alarm's state value, `OK` | `ALARM` |
  `INSUFFICIENT_DATA` (what deployment guardrails watch); `CloudWatchService.states(names)` is the same
  call, awaited. `CloudWatchService.subscribe(callback)` hears every state change on the event loop.
- `records` — the frozen records these take and return (`MetricQuery`, `Datapoint`, `AlarmState`, …),
  and the metric names under SageMaker's namespace `AWS/SageMaker` with dimensions `EndpointName`,
  `VariantName`.

`service.open_cloudwatch` builds it all for `moorage serve`; `api/cloudwatch.py` is the HTTP edge.
"""
