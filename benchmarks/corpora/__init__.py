"""Report corpora for the compression dictionary: `training` builds it, `evaluation`
measures it. They are written apart (different code, vocabularies, hosts, devices, log
messages and seeds) and must stay apart: a dictionary measured on the reports it was
trained on looks two to three times better than it is (issue 18)."""
