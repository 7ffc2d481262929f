//! MotherGoose: GitLab job events to queue to runners, on the deployed IR.
