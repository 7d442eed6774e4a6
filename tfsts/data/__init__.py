"""Video and image data: the record schema (``tfsts.data.schema``) shared by data_prep and the readers.

Kept free of eager imports: data_prep's Beam workers import ``tfsts.data.schema`` and must not
pay for TensorFlow.
"""
