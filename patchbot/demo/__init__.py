"""`patchbot demo`: the sample dual-stack project, its mails, and the whole pipeline run on them."""
