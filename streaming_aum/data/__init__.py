"""Training and evaluation data made here, without downloads of corpora: text-to-speech keyword
clips (``keywords``), background and room banks (``background``), on-the-fly augmentation
(``augment``) and long labelled streams (``streams``). Generated audio is never committed; the
generators and their manifests are. Recipe: ../shared/docs/data.md (summarised in each module).
"""
