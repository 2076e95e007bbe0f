"""What the exporter reads from the user's Keras model, and how its clones take it over.

``signature`` (inputs and outputs, named), ``input_checks`` (a given signature or golden
inputs against the model's), ``training_setup`` (an optimizer and compile that a clone
can repeat), ``shared_state`` and ``layer_state`` (clones take the model's variables and
its layers' state), ``custom_step`` (a model's own ``train_step``/``test_step``),
``eager`` (the golden forward pass), ``targets`` (the train and eval signatures' targets),
``source_file`` (``.keras`` files and sample inputs).
"""
