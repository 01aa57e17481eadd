import logging

import pytest


@pytest.fixture
def log_lines():
    """``log_lines("name")`` -> a list that receives the messages of that logger from INFO on;
    works where caplog does not (detectron2's ``setup_logger`` turns propagation off)."""
    attached = []

    def attach(name):
        lines = []
        handler = logging.Handler(logging.INFO)
        handler.emit = lambda record: lines.append(record.getMessage())
        logger = logging.getLogger(name)
        attached.append((logger, handler, logger.level))
        logger.addHandler(handler)
        if not logger.isEnabledFor(logging.INFO):
            logger.setLevel(logging.INFO)
        return lines

    yield attach
    for logger, handler, level in attached:
        logger.removeHandler(handler)
        logger.setLevel(level)
