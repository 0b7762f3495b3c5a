"""Training and evaluation data made here, without downloads of corpora: text-to-speech keyword
clips (``words``, ``voices``, ``synth``, ``keywords``), recordings from Debian packages
(``fetch``), procedural sounds (``procedural``), coloured noise (``noise``), room impulse
responses (``rooms``), the background/event banks (``background``, split by ``splits``),
on-the-fly augmentation (``augment``) and long labelled streams (``streams``). Generated audio is never committed; the
generators and their manifests are. Recipe: ../shared/docs/data.md (summarised in each module).
"""
