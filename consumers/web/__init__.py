"""The web view: a consumer service that keeps a live model of runs and serves it to browsers.

`model` holds the runs, `plotdata` shapes plots, `api` answers JSON, `push`
sends changes as Server-Sent Events, `engine_proxy` carries the engine panel's
requests, `app` puts them together, `service` runs it beside the consumer loop.
"""
