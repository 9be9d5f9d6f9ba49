"""The event log: logged decisions, posted rewards, the joined records learners read, and their JSONL files.

``events``  building a logged event, the reward rule, joined records (the format's one definition)
``jsonl``   reading and checking joined-log JSONL files (``storefront export`` or imported)
"""
