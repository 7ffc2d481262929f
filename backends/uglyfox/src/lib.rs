//! UglyFox: runner health, pruning, Apex/Nadir pools, audit and cron Jobs, on the deployed IR.
