"""The learner process (``storefront learn``; started by ``storefront serve``).

``joiner``         joins each decision with its rewards when its window closes
``ladder_runner``  runs every slot's escalation from the joined stream, as the single writer of ladder states
``loop``           the process's loop: join, run the ladders, stop cleanly on SIGTERM
"""
