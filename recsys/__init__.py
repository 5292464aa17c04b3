"""recsys: recommendation engine for e-commerce.

Data flows one way: data -> matrix -> models -> lists -> Redis -> API.
The subpackages follow that flow: ``recsys.data`` (loading, validation, matrices),
``recsys.models`` (recommenders behind one interface), ``recsys.evaluation``
(offline metrics), ``recsys.pipeline`` (training runs), ``recsys.publish``
(versioned lists in Redis), ``recsys.store`` (the Redis key layout shared with
the API) and ``recsys.abtest`` (experiments and their statistics).
"""

__version__ = "0.1.0"
