"""Alerting: rules on probe results, the Alertmanager-compatible alert store, silences,
inhibition, time intervals, the route tree and aggregation groups, the durable notification
outbox and its dispatcher.  Notifiers themselves are plugins (``pudimd_notifier_types``).

The data path reads one way: rules / pushed alerts -> :mod:`~pudimd.alerting.store` ->
suppression (silences, inhibition, time intervals) -> routing and groups ->
:mod:`~pudimd.alerting.outbox` -> notifier plugins.
"""
