"""The features stage: images decoded and preprocessed (``images``), the pretrained CNNs (``backbones``), their
grid of every image extracted once (``extract``) into a sharded store on disk (``store``; ``preflight`` checks a
store before the work).
"""
