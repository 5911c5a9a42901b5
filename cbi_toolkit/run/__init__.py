"""A forecasting run, as `cbi-run` does it, one job per module:

* `options`: what a run is told (`RunOptions`), what it reports as it goes (`RunEvents`)
  and what it returns (`RunResult`, `EvaluationResult`);
* `prepare`: the data stage: sources -> aligned frame -> samples, and its summary;
* `stages`: a new (or resumed) run: walk-forward, gate, final fit, forecast, artifacts;
* `folder`: the run folder: creating it, its status, its invocation record;
* `gate`: the deploy gate;
* `publish`: writing forecasts and the track record to the sink;
* `interrupts`: Ctrl-C during a run;
* `saved`: commands on a saved run: resume, sink-only, predict, evaluate, export;
* `scoring`: a saved model scored on newer origins (for `saved.evaluate_run`).

Nothing here parses arguments, prints or chooses exit codes: the command lines do
(`cbi_toolkit.cli`, `cbi_toolkit.search.cli`)."""
