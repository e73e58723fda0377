"""The stages of a cycle, in the order the cycle flow calls them, one module each:

``context`` (the campaign a run works on) → ``advance`` (the open batch: collect,
consensus, wait or open the next cycle) → ``train`` (fit, evaluate, log to MLflow) →
``decide`` (stopping rules and drift; stop) → ``select`` (the next batch) →
``dispatch`` (to Label Studio, then schedule the next run).

Each stage takes the :class:`~flows.stages.context.CampaignRun` and what the stages
before it produced, calls tasks, and leaves a checkpoint before the state moves on.
"""
