"""Demo datasets shipped with OWM: short factual paragraphs written for OWM by
its authors and dedicated to the public domain (CC0-1.0), one ``owm-dataset/1`` file per
sub-model, plus ``sub_models.json`` (the demo sub-models' domains). Loaded idempotently by
``KnowledgeBase.load_demo_data``.
"""
